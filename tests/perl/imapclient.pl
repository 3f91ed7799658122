#!/usr/bin/perl
# Mail::IMAPClient (Debian's libmail-imapclient-perl) against mailserv, as imapsync and admin
# scripts use it.  The job (JSON, first argument) says the transport, the users, the messages
# and the mode; what the library read is printed as JSON for tests/test_interop_perl.py.
use strict;
use warnings;
use FindBin;
use Mail::IMAPClient;
require "$FindBin::Bin/common.pl";

my $job = load_job();

sub connect_as {
    my ($login) = @_;
    my @transport;
    if ( $job->{transport} eq 'imaps' ) {
        @transport = ( Port => $job->{imaps_port}, Ssl => [ ssl_options($job) ] );
    }
    elsif ( $job->{transport} eq 'starttls' ) {
        @transport = ( Port => $job->{imap_port}, Starttls => [ ssl_options($job) ] );
    }
    else {
        @transport = ( Port => $job->{imap_port} );
    }
    my $imap = Mail::IMAPClient->new(
        Server   => $job->{host},
        @transport,
        User     => $login->{user},
        Password => $login->{password},
        Uid      => 1,
        Peek     => 1,
        Timeout  => 60,
        Compress => $job->{compress} ? 1 : 0,    # COMPRESS=DEFLATE after LOGIN (RFC 4978)
    ) or die "connect/login as $login->{user}: $@\n";
    $imap->IsAuthenticated or die "not authenticated: " . $imap->LastError . "\n";
    return $imap;
}

# Dies with the library's last error unless $ok.
sub check {
    my ( $imap, $ok, $what ) = @_;
    die "$what: " . ( $imap->LastError // 'failed' ) . "\n" unless $ok;
    return $ok;
}

sub search_string {
    my ( $imap, $tokens ) = @_;
    # A token out of ASCII goes as UTF-8 in a literal (Quote decides), as imapsync sends it.
    return join ' ',
      map { /^[\w\\\$.:<>@-]+$/ ? $_ : $imap->Quote($_) }
      map { my $bytes = $_; utf8::encode($bytes); $bytes } @$tokens;
}

sub part_info {
    my ($part) = @_;
    my %params = %{ ref $part->{bodyparms} eq 'HASH' ? $part->{bodyparms} : {} };
    return {
        id      => '' . $part->id,
        type    => lc( $part->bodytype // '' ),
        subtype => lc( $part->bodysubtype // '' ),
        params  => { map { lc($_) => $params{$_} } keys %params },
        ( $part->{bodytype} eq 'MULTIPART' ? () :
            ( encoding => lc( $part->bodyenc // '' ), size => 0 + $part->bodysize ) ),
    };
}

sub session {
    my %out;
    my $imap = connect_as( $job->{login} );
    $out{socket} = ref $imap->Socket;
    $out{capability} = check( $imap, scalar( $imap->capability ), 'CAPABILITY' );
    my ( $box, $renamed, $target, $scratch ) = @{ $job->{folders} };

    check( $imap, $imap->create($box), 'CREATE' );
    check( $imap, $imap->create($target), 'CREATE' );
    check( $imap, $imap->create($scratch), 'CREATE' );
    check( $imap, $imap->rename( $box, $renamed ), 'RENAME' );
    check( $imap, $imap->subscribe($renamed), 'SUBSCRIBE' );
    $out{list} = [ $imap->folders ];
    $out{lsub} = [ $imap->subscribed ];

    # What imapsync asks before it copies: the separator and prefix (NAMESPACE), each
    # folder's attributes, UIDVALIDITY and UIDNEXT (read from STATUS by regex).
    $out{separator} = check( $imap, $imap->separator, 'separator' );
    my $ns = check( $imap, scalar $imap->namespace, 'NAMESPACE' );
    $out{personal_namespace} = $ns->[0][0];
    $out{selectable} = $imap->selectable($renamed) ? 1 : 0;
    $out{is_parent} = $imap->is_parent($renamed) ? 1 : 0;
    $out{exists} = $imap->exists($renamed) ? 1 : 0;
    $out{exists_not} = $imap->exists($box) ? 1 : 0;
    $out{uidvalidity} = 0 + check( $imap, $imap->uidvalidity($renamed), 'UIDVALIDITY' );
    $out{uidnext_empty} = 0 + check( $imap, $imap->uidnext($renamed), 'UIDNEXT' );

    my @uids;
    for my $m ( @{ $job->{messages} } ) {
        my $uid = $imap->append_string( $renamed, slurp( $m->{path} ), $m->{flags}, $m->{date} );
        check( $imap, $uid, 'APPEND' );
        push @uids, 0 + $uid;
    }
    $out{uids} = \@uids;

    check( $imap, $imap->examine($renamed), 'EXAMINE' );
    $out{examine_count} = 0 + $imap->message_count($renamed);
    check( $imap, $imap->select($renamed), 'SELECT' );

    my $hash = check( $imap, scalar $imap->fetch_hash( \@uids, 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE' ),
        'FETCH' );
    $out{fetch} = {
        map {
            $_ => {
                flags        => [ sort split ' ', $hash->{$_}{FLAGS} ],
                internaldate => $hash->{$_}{INTERNALDATE},
                size         => 0 + $hash->{$_}{'RFC822.SIZE'},
            }
        } keys %$hash
    };

    my $first = $uids[0];
    my $headers = check( $imap, scalar $imap->parse_headers( \@uids, 'Subject', 'Message-ID', 'To' ),
        'parse_headers' );
    $out{headers} = {
        map { my $uid = $_; $uid => { map { lc($_) => $headers->{$uid}{$_} } keys %{ $headers->{$uid} } } }
          keys %$headers
    };
    $out{size} = 0 + check( $imap, $imap->size($first), 'size' );
    $out{uidnext} = 0 + $imap->uidnext($renamed);
    my $env = check( $imap, $imap->get_envelope($first), 'ENVELOPE' );
    $out{envelope} = {
        subject   => $env->subject,
        date      => $env->date,
        messageid => $env->messageid,
        from      => [ $env->from_addresses ],
        to        => [ $env->to_addresses ],
        cc        => [ $env->cc_addresses ],
    };
    my $bs = check( $imap, $imap->get_bodystructure($first), 'BODYSTRUCTURE' );
    $out{bodystructure} = {
        type  => lc $bs->bodytype,
        parts => [ map { part_info($_) } $bs->bodystructure ],
        ids   => [ $bs->parts ],
    };
    my %sections;
    for my $part ( @{ $out{bodystructure}{parts} } ) {
        next if $part->{type} eq 'multipart';
        my $data = $imap->bodypart_string( $first, $part->{id} );
        check( $imap, defined $data, "BODY.PEEK[$part->{id}]" );
        $sections{ $part->{id} } = b64($data);
    }
    $out{sections} = \%sections;

    $out{search} = [
        map {
            my $hits = check( $imap, scalar $imap->search( search_string( $imap, $_ ) ), 'SEARCH' );
            [ sort { $a <=> $b } map { 0 + $_ } @$hits ]
        } @{ $job->{searches} }
    ];

    check( $imap, $imap->set_flag( '\\Flagged', $first ), 'STORE +FLAGS' );
    check( $imap, $imap->unset_flag( '\\Seen', $first ), 'STORE -FLAGS' );
    check( $imap, $imap->store( $uids[1], '+FLAGS', '($Label1)' ), 'STORE' );
    my $flags = scalar $imap->fetch_hash( \@uids, 'FLAGS' );
    $out{stored} = { map { $_ => [ sort split ' ', $flags->{$_}{FLAGS} ] } keys %$flags };

    my $copied = check( $imap, $imap->copy( $target, $first ), 'COPY' );
    $out{copyuid} = "$copied";
    # Mail::IMAPClient's move() is COPY then \Deleted (it sends no MOVE): EXPUNGE follows.
    my $moved = check( $imap, $imap->move( $target, $uids[1] ), 'move' );
    $out{moveuid} = "$moved";
    check( $imap, $imap->expunge, 'EXPUNGE' );
    $out{after_expunge} = [ sort { $a <=> $b } map { 0 + $_ } $imap->messages ];

    my @status = $imap->status( $target, 'MESSAGES', 'UIDNEXT', 'UNSEEN' );
    check( $imap, scalar(@status), 'STATUS' );
    my ($line) = grep { /^\* STATUS/ } @status;
    $out{status} = { $line =~ /\b(MESSAGES|UIDNEXT|UNSEEN) (\d+)/g };

    check( $imap, $imap->close, 'CLOSE' );
    check( $imap, $imap->delete($scratch), 'DELETE' );
    check( $imap, $imap->logout, 'LOGOUT' );
    return \%out;
}

sub idle {
    my $imap = connect_as( $job->{login} );
    check( $imap, $imap->select('INBOX'), 'SELECT' );
    my $tag = check( $imap, $imap->idle, 'IDLE' );
    $| = 1;
    print "idling\n";
    my @seen;
    my $deadline = time + 60;
    while ( time < $deadline && !grep { /^\* \d+ EXISTS/ } @seen ) {
        my $got = $imap->idle_data(5);
        check( $imap, defined $got, 'idle_data' );
        push @seen, @$got;
    }
    check( $imap, $imap->done($tag), 'DONE' );
    my @uids = $imap->search('ALL');
    my $logout = $imap->logout;
    return { untagged => [ map { s/\r\n$//r } @seen ], uids => [ map { 0 + $_ } @uids ] };
}

# What imapsync does for one folder: read each message's flags, internal date and bytes from
# the source account and APPEND them with the same flags and date to the destination.
sub copy_folder {
    my ( $folder, $dest_folder ) = @{ $job->{folders} };
    my $src = connect_as( $job->{login} );
    my $dst = connect_as( $job->{dest_login} );
    check( $dst, $dst->create($dest_folder), 'CREATE' ) unless $dst->exists($dest_folder);
    check( $src, $src->examine($folder), 'EXAMINE' );
    my @uids = $src->messages;
    my $meta = check( $src, scalar $src->fetch_hash( \@uids, 'FLAGS', 'INTERNALDATE', 'RFC822.SIZE' ),
        'FETCH' );
    my @new;
    for my $uid ( sort { $a <=> $b } @uids ) {
        my $bytes = $src->message_string($uid);
        check( $src, defined $bytes, 'message_string' );
        length($bytes) == $meta->{$uid}{'RFC822.SIZE'} or die "size of $uid differs\n";
        my $flags = join ' ', grep { !/^\\Recent$/i } split ' ', $meta->{$uid}{FLAGS};
        my $got = $dst->append_string( $dest_folder, $bytes, $flags, $meta->{$uid}{INTERNALDATE} );
        check( $dst, $got, 'APPEND' );
        push @new, 0 + $got;
    }
    check( $src, $src->logout, 'LOGOUT' );
    check( $dst, $dst->logout, 'LOGOUT' );
    return {
        source_uids => [ map { 0 + $_ } sort { $a <=> $b } @uids ],
        dest_uids   => \@new,
        # compress() leaves its deflate settings here once the server said OK
        compressed => ( ref $src->Compress eq 'ARRAY' && ref $dst->Compress eq 'ARRAY' ) ? 1 : 0,
    };
}

my %modes = ( session => \&session, idle => \&idle, copy => \&copy_folder );
report( $modes{ $job->{mode} }->() );
