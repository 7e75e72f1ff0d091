# Written by tandem-image. On the serial console (root is logged in there
# once boot-complete.target is reached), say so: the QEMU rig and the demo
# wait for TANDEM-READY. A wide line and no bracketed paste keep typed
# commands readable in the console log.
if [ "$(tty 2>/dev/null)" = /dev/@TTY@ ]; then
    stty cols 1000 2>/dev/null
    [ -n "${BASH_VERSION:-}" ] && bind 'set enable-bracketed-paste off' 2>/dev/null
    echo "TANDEM-READY slot=$(sed -n 's/.*tandem\.slot=\([ab]\).*/\1/p' /proc/cmdline)"
fi
