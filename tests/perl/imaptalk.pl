#!/usr/bin/perl
# Mail::IMAPTalk (Debian's libmail-imaptalk-perl, Fastmail's client) against mailserv.  The
# job (JSON, first argument) says the transport, the users, the messages and the mode; what
# the library parsed is printed as JSON for tests/test_interop_perl.py.
use strict;
use warnings;
use FindBin;
use IO::Socket::IP;
use POSIX ();
use IO::Socket::SSL;
use Mail::IMAPTalk;
require "$FindBin::Bin/common.pl";

my $job = load_job();

# Mail::IMAPTalk has no STARTTLS of its own: as its users do, speak STARTTLS on the socket,
# upgrade it to TLS, and hand it over (its Socket option) to log in.
sub starttls_socket {
    my $sock = IO::Socket::IP->new(
        PeerHost => $job->{host},
        PeerPort => $job->{imap_port},
        Timeout  => 60,
    ) or die "connect: $@\n";
    my $greeting = <$sock>;
    $greeting =~ /^\* OK/ or die "greeting: $greeting";
    print $sock "s1 STARTTLS\r\n";
    while ( my $line = <$sock> ) {
        next if $line =~ /^\* /;
        $line =~ /^s1 OK/ or die "STARTTLS: $line";
        last;
    }
    IO::Socket::SSL->start_SSL( $sock, ssl_options($job), Timeout => 60 )
      or die "TLS: " . IO::Socket::SSL::errstr() . "\n";
    return $sock;
}

sub connect_as {
    my ($login) = @_;
    # Over TLS, blocking reads: the library's non-blocking sysread takes SSL_WANT_READ (a
    # TLS 1.3 session ticket arriving without application data) for a closed connection.
    # Its Timeout only works without them, so plain IMAP keeps the default.
    my %common = (
        Uid           => 1,
        PreserveINBOX => 1,
        UseBlocking   => $job->{transport} ne 'plain',
    );
    my $imap;
    if ( $job->{transport} eq 'starttls' ) {
        $imap = Mail::IMAPTalk->new(
            Socket => starttls_socket(),
            State  => Mail::IMAPTalk::Connected,
            %common
        ) or die "IMAPTalk on the TLS socket: $@\n";
        $imap->login( $login->{user}, $login->{password} )
          or die "login: " . $imap->get_last_error . "\n";
    }
    else {
        my @tls = $job->{transport} eq 'imaps' ? ( UseSSL => 1, ssl_options($job) ) : ();
        $imap = Mail::IMAPTalk->new(
            Server   => $job->{host},
            Port     => $job->{ $job->{transport} eq 'imaps' ? 'imaps_port' : 'imap_port' },
            Username => $login->{user},
            Password => $login->{password},
            @tls, %common
        ) or die "connect/login as $login->{user}: $@\n";
    }
    $imap->{Timeout} = 60;    # no read waits for ever (the library has no option for it)
    $imap->set_tracing(1) if $ENV{MAILSERV_PERL_TRACE};
    return $imap;
}

sub check {
    my ( $imap, $ok, $what ) = @_;
    die "$what: " . ( $imap->get_last_error // 'failed' ) . "\n" unless $ok;
    return $ok;
}

sub names {
    my ($listing) = @_;
    return [ map { $_->[2] } @$listing ];
}

# The parsed body structure, flattened to its parts: part number, type, encoding, size.
sub parts {
    my ( $bs, $id ) = @_;
    my @found;
    my %params = %{ $bs->{'Content-Type'} || {} };
    my %part = (
        id      => $id,
        type    => $bs->{'MIME-Type'},
        subtype => $bs->{'MIME-Subtype'},
        params  => \%params,
        leftover => scalar @{ $bs->{Remainder} || [] },
    );
    if ( $bs->{'MIME-Subparts'} ) {
        push @found, \%part if $id ne '';
        my $n = 0;
        for my $sub ( @{ $bs->{'MIME-Subparts'} } ) {
            $n++;
            push @found, parts( $sub, $id eq '' ? "$n" : "$id.$n" );
        }
    }
    else {
        $part{encoding} = lc $bs->{'Content-Transfer-Encoding'};
        $part{size}     = 0 + $bs->{Size};
        $part{partnum}  = $bs->{'IMAP-Partnum'};
        $part{disposition} = $bs->{'Disposition-Type'};
        $part{disposition_params} = $bs->{'Content-Disposition'};
        push @found, \%part;
    }
    return @found;
}

sub session {
    my %out;
    my $imap = connect_as( $job->{login} );
    $out{socket} = ref $imap->{Socket};
    $out{capability} = [ map { uc } keys %{ check( $imap, scalar $imap->capability, 'CAPABILITY' ) } ];
    my ( $box, $renamed, $target, $scratch ) = @{ $job->{folders} };

    check( $imap, scalar $imap->create($_), "CREATE $_" ) for ( $box, $target, $scratch );
    check( $imap, scalar $imap->rename( $box, $renamed ), 'RENAME' );
    check( $imap, scalar $imap->subscribe($renamed), 'SUBSCRIBE' );
    $out{list} = names( check( $imap, scalar $imap->list( '', '*' ), 'LIST' ) );
    $out{lsub} = names( check( $imap, scalar $imap->lsub( '', '*' ), 'LSUB' ) );

    # A name out of ASCII: the library encodes it to modified UTF-7 and decodes what LIST
    # answers (RFC 3501 5.1.3).
    $imap->set_unicode_folders(1);
    check( $imap, scalar $imap->create( $job->{unicode_folder} ), 'CREATE (unicode)' );
    $out{unicode_list} = [
        map { my $bytes = $_; utf8::encode($bytes); $bytes }
          @{ names( check( $imap, scalar $imap->list( '', '*' ), 'LIST (unicode)' ) ) }
    ];
    $imap->set_unicode_folders(0);

    my @uids;
    for my $m ( @{ $job->{messages} } ) {
        check( $imap, scalar $imap->append( $renamed, "($m->{flags})", $m->{date},
            { Literal => slurp( $m->{path} ) } ), 'APPEND' );
        push @uids, 0 + $imap->get_response_code('appenduid')->[1];
    }
    $out{uids} = \@uids;

    check( $imap, scalar $imap->examine($renamed), 'EXAMINE' );
    $out{examine_count} = 0 + $imap->get_response_code('exists');
    $out{examine_mode} = $imap->get_response_code('foldermode');
    check( $imap, scalar $imap->select($renamed), 'SELECT' );

    my $res = check( $imap, scalar
        $imap->fetch( \@uids, '(flags internaldate rfc822.size envelope bodystructure)' ),
        'FETCH' );
    $out{fetch} = {
        map {
            $_ => {
                flags        => $res->{$_}{flags},
                internaldate => $res->{$_}{internaldate},
                size         => 0 + $res->{$_}{'rfc822.size'},
            }
        } keys %$res
    };
    my $first = $uids[0];
    my $env = $res->{$first}{envelope};
    $out{envelope} = {
        subject   => $env->{Subject},
        date      => $env->{Date},
        messageid => $env->{'Message-ID'},
        from      => $env->{From},
        to        => $env->{To},
        cc        => $env->{Cc},
        sender    => $env->{Sender},
        replyto   => $env->{'Reply-To'},
    };
    my $bs = $res->{$first}{bodystructure};
    $out{bodystructure} = { type => $bs->{'MIME-Type'}, parts => [ parts( $bs, '' ) ] };

    my %sections;
    for my $part ( @{ $out{bodystructure}{parts} } ) {
        next if $part->{type} eq 'multipart';
        my $got = check( $imap, scalar $imap->fetch( $first, "(body.peek[$part->{id}])" ),
            "BODY.PEEK[$part->{id}]" );
        $sections{ $part->{id} } = b64( $got->{$first}{body} );
    }
    $out{sections} = \%sections;

    $out{search} = [
        map {
            # A token out of ASCII goes as a literal of its UTF-8 bytes (the library would
            # send it bare, as an atom, which IMAP does not allow).
            my @tokens = map {
                my $bytes = $_;
                utf8::encode($bytes);
                /[^\x00-\x7f]/ ? { Literal => $bytes } : $_
            } @$_;
            my $hits = check( $imap, scalar $imap->search(@tokens), 'SEARCH' );
            [ sort { $a <=> $b } map { 0 + $_ } @$hits ]
        } @{ $job->{searches} }
    ];

    check( $imap, scalar $imap->store( $first, '+flags', '(\\Flagged)' ), 'STORE +FLAGS' );
    check( $imap, scalar $imap->store( $first, '-flags', '(\\Seen)' ), 'STORE -FLAGS' );
    check( $imap, scalar $imap->store( $uids[1], '+flags', '($Label1)' ), 'STORE' );
    my $flags = check( $imap, scalar $imap->fetch( \@uids, 'flags' ), 'FETCH FLAGS' );
    $out{stored} = { map { $_ => $flags->{$_}{flags} } keys %$flags };

    check( $imap, scalar $imap->copy( $first, $target ), 'COPY' );
    $out{copyuid} = $imap->get_response_code('copyuid');
    # A real MOVE (RFC 6851): the message leaves at once, no EXPUNGE needed for it.
    check( $imap, scalar $imap->move( $uids[1], $target ), 'MOVE' );
    $out{moveuid} = $imap->get_response_code('copyuid');
    check( $imap, scalar $imap->expunge, 'EXPUNGE' );
    $out{after_expunge} = [ map { 0 + $_ } @{ check( $imap, scalar $imap->search('all'), 'SEARCH' ) } ];

    my $status = check( $imap, scalar $imap->status( $target, '(messages uidnext unseen)' ), 'STATUS' );
    $out{status} = { map { uc($_) => "$status->{$_}" } keys %$status };

    check( $imap, scalar $imap->close, 'CLOSE' );
    check( $imap, scalar $imap->delete($scratch), 'DELETE' );
    $imap->logout;
    return \%out;
}

sub idle {
    my $imap = connect_as( $job->{login} );
    check( $imap, scalar $imap->select('INBOX'), 'SELECT' );
    my @events;
    $| = 1;
    # Tell the other side once the server's "+ idling" is read (it appends then).
    $imap->set_tracing( sub { print "idling\n" if $_[0] =~ /^S: \+ idling/ } );
    my $callback = sub {
        my ( $type, $value ) = @_[ 0, 1 ];
        push @events, [ $type, ref $value ? "@$value" : "$value" ];
        return $type eq 'exists';
    };
    check( $imap, scalar $imap->idle( $callback, 60 ), 'IDLE' );
    $imap->set_tracing(0);
    die "IDLE timed out\n" if $imap->{Cache}{timeout};
    my $uids = check( $imap, scalar $imap->search('all'), 'SEARCH' );
    $imap->logout;
    return { events => \@events, uids => [ map { 0 + $_ } @$uids ] };
}

my %modes = ( session => \&session, idle => \&idle );
my $out = eval { $modes{ $job->{mode} }->() };
if ( !$out ) {
    # Leave without the library's DESTROY, which would wait for the server to answer.
    print STDERR $@;
    POSIX::_exit(1);
}
report($out);
