# Shared by the Perl client scripts of tests/test_interop_perl.py: the job they are given
# (a JSON file named by the first argument) and how they report (JSON on standard output).
use strict;
use warnings;
use JSON::PP ();
use MIME::Base64 ();

sub slurp {
    my ($path) = @_;
    open( my $fh, '<:raw', $path ) or die "$path: $!\n";
    local $/;
    return scalar <$fh>;
}

sub load_job { return JSON::PP::decode_json( slurp( $ARGV[0] ) ) }

# IO::Socket::SSL options trusting only the server's certificate, for the name localhost (or
# the job's tls_name, to show that a wrong one is refused).
sub ssl_options {
    my ($job) = @_;
    my $name = $job->{tls_name} // 'localhost';
    return (
        SSL_ca_file         => $job->{ca},
        SSL_verify_mode     => 1,                  # SSL_VERIFY_PEER
        SSL_hostname        => $name,
        SSL_verifycn_name   => $name,
        SSL_verifycn_scheme => 'imap',
    );
}

sub b64 { return MIME::Base64::encode_base64( $_[0], '' ) }

sub report {
    my ($out) = @_;
    print JSON::PP->new->canonical->encode($out), "\n";
}

1;
