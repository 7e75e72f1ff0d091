# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_tandem_global_optspecs
    string join \n config= root= v/verbose direct h/help V/version
end

function __fish_tandem_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_tandem_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_tandem_using_subcommand
    set -l cmd (__fish_tandem_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c tandem -n "__fish_tandem_needs_command" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_needs_command" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_needs_command" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_needs_command" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_needs_command" -s V -l version -d 'Print version'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "keygen" -d 'Generate an ed25519 signing key pair (PREFIX.key, PREFIX.pub)'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "bundle" -d 'Create, sign, verify and inspect bundles'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "install" -d 'Verify a bundle and write it into the inactive slot group'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "boot-check" -d 'After boot: run health checks on a trial boot and commit or fall back; record a bootloader fallback. Run it from a unit ordered before boot-complete.target, or from a plain init'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "mark-good" -d 'Commit the booted slot group: the bootloader keeps booting it'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "mark-bad" -d 'Mark a slot group bad (default: the booted one) so it is not booted'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "arm" -d 'Arm the installed other group for a trial boot (after an install that was cut off before it could)'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "rollback" -d 'Make the other slot group primary, if it is known to be good'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "cancel" -d 'Stop the daemon\'s running install (the target group stays invalid)'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "daemon" -d 'Serve the D-Bus API on the system bus (docs/dbus.md) and run the channel and hawkBit loops; run by tandem.service'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "hawkbit" -d 'Talk to the hawkBit (DDI) fleet server of [hawkbit] (docs/fleet.md)'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "check" -d 'Check the update channel of [channel] now and act as its strategy says: stage an update, arm it when the strategy allows (the daemon does this on its interval; docs/channel.md)'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "apply" -d 'Arm the update the channel loop staged and reboot into it (the manual strategy; under fleet_lock after taking a reboot slot)'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "repo" -d 'Publish a channel: a static TUF repository of bundles (docs/channel.md)'
complete -c tandem -n "__fish_tandem_needs_command" -f -a "status" -d 'Show both slot groups, the booted and primary slot, and the last operation'
complete -c tandem -n "__fish_tandem_using_subcommand keygen" -s o -l output -d 'Path prefix for the key files' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand keygen" -l comment -d 'Comment stored with the public key' -r
complete -c tandem -n "__fish_tandem_using_subcommand keygen" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand keygen" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand keygen" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand keygen" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand keygen" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -f -a "create" -d 'Build a bundle from image files, streaming'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -f -a "sign" -d 'Add signatures to a bundle (in place unless --output is given)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -f -a "verify" -d 'Check signatures against a keyring and every payload\'s hash'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -f -a "push" -d 'Push a bundle to an OCI registry, as an artifact devices install with `tandem install oci://…`'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -f -a "diff" -d 'What a device running OLD (a bundle or a slot image) would fetch of NEW in an adaptive install (signatures not checked)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and not __fish_seen_subcommand_from create sign verify push diff info" -f -a "info" -d 'Print the manifest and signer key ids (not verified)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -s o -l output -d 'Where to write the bundle' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l version -d 'Bundle version (semver)' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l compatible -d 'Product/hardware string the device must match' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l security-epoch -d 'Security epoch: devices refuse a bundle below their epoch floor (docs/security.md)' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l description -d 'Free text stored in the manifest' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l image -d 'CLASS=PATH, in install order; repeat for several slot classes. CLASS@a=PATH and CLASS@b=PATH give one image per slot group (a unified kernel image whose signed command line names its slot)' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l compression -d 'How image payloads are stored' -r -f -a "none\t'Stored as they are'
zstd\t'zstd: one frame per chunk (see --chunking), decoded without a copy on install'"
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l chunking -d 'How images are cut into verifiable chunks: content-defined (what adaptive updates fetch by range) or fixed 1 MiB chunks (what agents before adaptive updates read)' -r -f -a "cdc\t'Content-defined chunks of 4-64 KiB (8 KiB on average), each its own zstd frame, with a chunk table'
fixed\t'1 MiB chunks (zstd: 1 MiB frames) with a chunk index'"
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l created -d 'Creation time, Unix seconds [default: SOURCE_DATE_EPOCH, else now]' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -s j -l jobs -d 'Threads compressing zstd frames [default: one per CPU]. The bundle is the same, byte for byte, whatever the number' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l key -d 'Signing key; repeat to sign with several. None makes an unsigned bundle' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from sign" -l key -d 'Signing key; repeat to sign with several' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from sign" -s o -l output -d 'Write the signed bundle here instead of in place' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from sign" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from sign" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from sign" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from sign" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from sign" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from verify" -l keyring -d 'Keyring directory [default: from the configuration]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from verify" -l threshold -d 'Distinct trusted signatures required [default: from the configuration; 1 with --keyring]' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from verify" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from verify" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from verify" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from verify" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from verify" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -l auth-file -d 'Credentials: a containers auth.json or docker config.json [default: [oci] auth_file, else the usual places]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -l ca-file -d 'PEM CAs to trust for the registry\'s TLS [default: [http] ca_file]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -l plain-http -d 'Speak plain HTTP to this registry (also: [oci] insecure_registries)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from push" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from diff" -l into -d 'The group it installs into (it runs OLD in the other): decides which of a bundle\'s per-group images count' -r
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from diff" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from diff" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from diff" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from diff" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from info" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from info" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from info" -l json -d 'Print the manifest and key ids as JSON'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from info" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from info" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand bundle; and __fish_seen_subcommand_from info" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand install" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand install" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand install" -l allow-downgrade -d 'Allow a version older than the running one (never a lower security epoch)'
complete -c tandem -n "__fish_tandem_using_subcommand install" -l force -d 'Install even a version that failed on this device before'
complete -c tandem -n "__fish_tandem_using_subcommand install" -l reboot -d 'Reboot into the new slot group once it is armed'
complete -c tandem -n "__fish_tandem_using_subcommand install" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand install" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand install" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand boot-check" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand boot-check" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand boot-check" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand boot-check" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand boot-check" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand mark-good" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand mark-good" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand mark-good" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand mark-good" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand mark-good" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand mark-bad" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand mark-bad" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand mark-bad" -l force -d 'Even when the other group could not boot either (the bootloader is then left to its last resort)'
complete -c tandem -n "__fish_tandem_using_subcommand mark-bad" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand mark-bad" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand mark-bad" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand arm" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand arm" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand arm" -l reboot -d 'Reboot into it once it is armed'
complete -c tandem -n "__fish_tandem_using_subcommand arm" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand arm" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand arm" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand rollback" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand rollback" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand rollback" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand rollback" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand cancel" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand cancel" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand cancel" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand cancel" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand daemon" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand daemon" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand daemon" -l no-bus -d 'No D-Bus API: only the loops of [channel] and [hawkbit], for a device without a system bus'
complete -c tandem -n "__fish_tandem_using_subcommand daemon" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand daemon" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand daemon" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and not __fish_seen_subcommand_from poll" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and not __fish_seen_subcommand_from poll" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and not __fish_seen_subcommand_from poll" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and not __fish_seen_subcommand_from poll" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and not __fish_seen_subcommand_from poll" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and not __fish_seen_subcommand_from poll" -f -a "poll" -d 'Poll once and do what the server asks: register, install, report (the daemon does this in a loop)'
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and __fish_seen_subcommand_from poll" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and __fish_seen_subcommand_from poll" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and __fish_seen_subcommand_from poll" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and __fish_seen_subcommand_from poll" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand hawkbit; and __fish_seen_subcommand_from poll" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand check" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand check" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand check" -l json -d 'Print the result as JSON (docs/channel.md)'
complete -c tandem -n "__fish_tandem_using_subcommand check" -l reboot -d 'Reboot if the check armed a group (the daemon always does)'
complete -c tandem -n "__fish_tandem_using_subcommand check" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand check" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand check" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand apply" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand apply" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand apply" -l no-reboot -d 'Arm it, but do not reboot'
complete -c tandem -n "__fish_tandem_using_subcommand apply" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand apply" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand apply" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "init" -d 'Create a repository: keys, root, targets delegating to each channel, snapshot, timestamp'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "add" -d 'Publish a bundle in a channel (version, compatible and epoch from its manifest)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "remove" -d 'Withdraw a target: devices stop seeing it at their next check'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "pause" -d 'Pause a target\'s rollout: devices that have not started do not start'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "resume" -d 'Resume a paused rollout'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "timestamp" -d 'Re-sign timestamp.json with a new expiry (the online key\'s only job; run it more often than --expires-hours)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "rotate-root" -d 'Replace the root key: root version+1 signed by the old and the new key (the old one is kept as keys/root.key.N)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and not __fish_seen_subcommand_from init add remove pause resume timestamp rotate-root list" -f -a "list" -d 'List a channel\'s targets with their versions and rollout plans'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from init" -l channel -d 'A channel (a delegated role listing CHANNEL/* targets); repeatable' -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from init" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from init" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from init" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from init" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from init" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -l channel -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -l wave -d 'A rollout wave PERCENT@HOURS (from now), e.g. --wave 10@0 --wave 100@24; repeatable; none: everyone at once' -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -l location -d 'Devices fetch it from here instead (oci://HOST/REPO:TAG or an http(s) URL); the file is only hashed: its length and hash pin it' -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -l paused -d 'Publish it paused (`tandem repo resume` starts it)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from add" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from remove" -l channel -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from remove" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from remove" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from remove" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from remove" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from remove" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from pause" -l channel -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from pause" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from pause" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from pause" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from pause" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from pause" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from resume" -l channel -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from resume" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from resume" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from resume" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from resume" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from resume" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from timestamp" -l expires-hours -d 'Validity of the new timestamp' -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from timestamp" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from timestamp" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from timestamp" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from timestamp" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from timestamp" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from rotate-root" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from rotate-root" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from rotate-root" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from rotate-root" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from rotate-root" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from list" -l channel -r
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from list" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from list" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from list" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from list" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand repo; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c tandem -n "__fish_tandem_using_subcommand status" -l config -d 'Main configuration file [default: ROOT/etc/tandem/tandem.toml]' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand status" -l root -d 'Prefix for the configuration file and drop-in directories' -r -F
complete -c tandem -n "__fish_tandem_using_subcommand status" -l json -d 'Print the report as JSON (versioned: docs/status.md, docs/status.schema.json)'
complete -c tandem -n "__fish_tandem_using_subcommand status" -s v -l verbose -d 'More log output (-v info, -vv debug); TANDEM_LOG overrides'
complete -c tandem -n "__fish_tandem_using_subcommand status" -l direct -d 'Work directly, even when the daemon runs (same as TANDEM_NO_DAEMON=1)'
complete -c tandem -n "__fish_tandem_using_subcommand status" -s h -l help -d 'Print help'
