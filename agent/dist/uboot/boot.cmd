# Tandem A/B boot script for U-Boot, with the A/B state in a text file on
# the FAT boot partition (agent backend "uboot-file").
#
#   mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
#
# Variables (agent/src/boot/abvars.rs): TANDEM_ORDER ("a b" | "b a"),
# TANDEM_{A,B}_OK ("0" = must not boot), TANDEM_{A,B}_TRIES (empty =
# committed, a number = trial boots left), TANDEM_{A,B}_VERITY (the
# group's tandem.verity.* kernel parameters, appended to its command
# line). Missing ones read as order "a b", OK, committed, no verity.
#
# 1. The first group in order that is OK and committed or has tries left
#    boots; a trial's counter is decremented and the file rewritten BEFORE
#    the kernel is loaded, so a trial that never commits runs out and the
#    other group boots.
# 2. If its kernel or initrd does not load, the other group boots if the
#    variables allow it (its try counted the same way).
# 3. Last resort, when the variables allow nothing that loads: every group
#    in order, counting nothing; the first whose kernel and initrd load
#    boots. A device whose variables say "nothing" (a half-written group
#    and the other one marked bad) still finds its intact image.
# 4. Nothing loads at all: reset.
#
# Disk layout: partition 1 FAT (this script, tandem.env), 2 = slot a,
# 3 = slot b (ext4, /boot/vmlinuz, /boot/initrd.img and optionally
# /boot/tandem-args.env). The tandem_* variables below may be preset in the
# board's default environment; devtype and devnum must be set (distro boot
# sets them; tandem-image's board env for QEMU sets virtio 0).
# Tries count at most 9: setexpr prints hex, which equals decimal only for
# 0-9 (the agent refuses to arm more). Set bootdelay=0 in the board env:
# it saves 2 s per boot.

if test "x${tandem_bootpart}" = "x"; then setenv tandem_bootpart 1; fi
if test "x${tandem_part_a}" = "x"; then setenv tandem_part_a 2; fi
if test "x${tandem_part_b}" = "x"; then setenv tandem_part_b 3; fi
if test "x${tandem_envfile}" = "x"; then setenv tandem_envfile tandem.env; fi
if test "x${tandem_envaddr}" = "x"; then setenv tandem_envaddr ${kernel_addr_r}; fi
# booti decompresses a gzip Image (Debian's vmlinuz) here; QEMU virt RAM
# starts at 0x40000000, give the VM at least 1 GiB.
if test "x${kernel_comp_addr_r}" = "x"; then setenv kernel_comp_addr_r 0x50000000; fi

# Only the file decides: forget any TANDEM_* from the built-in env.
setenv TANDEM_ORDER
setenv TANDEM_A_OK
setenv TANDEM_A_TRIES
setenv TANDEM_B_OK
setenv TANDEM_B_TRIES
setenv TANDEM_A_VERITY
setenv TANDEM_B_VERITY
if load ${devtype} ${devnum}:${tandem_bootpart} ${tandem_envaddr} ${tandem_envfile}; then
	if test "${filesize}" != "0"; then
		env import -t ${tandem_envaddr} ${filesize} TANDEM_ORDER TANDEM_A_OK TANDEM_A_TRIES TANDEM_A_VERITY TANDEM_B_OK TANDEM_B_TRIES TANDEM_B_VERITY
	fi
else
	echo "tandem: no ${tandem_envfile}, using defaults"
fi

# Order: the first word that names a group, then the other one.
setenv tandem_first
for w in ${TANDEM_ORDER}; do
	if test "x${tandem_first}" = "x"; then
		if test "${w}" = "a" -o "${w}" = "A"; then setenv tandem_first a; fi
		if test "${w}" = "b" -o "${w}" = "B"; then setenv tandem_first b; fi
	fi
done
if test "${tandem_first}" = "b"; then
	setenv tandem_order "b a"
	setenv tandem_first_group b
	setenv tandem_second_group a
else
	setenv tandem_order "a b"
	setenv tandem_first_group a
	setenv tandem_second_group b
fi
# The board's kernel arguments; a slot's /boot/tandem-args.env replaces
# them for that slot only.
setenv tandem_board_bootargs "${tandem_bootargs}"

# Passes 1 and 2 boot by the variables (2 only after 1's group did not
# load, skipping it); passes 3 and 4 are the last resort, the groups in
# order. hush has no functions: one loop, the loading code once.
setenv tandem_failed
for tandem_pass in 1 2 3 4; do
	setenv tandem_slot
	setenv tandem_trial
	# (test evaluates -a and -o left to right: no mixing them.)
	setenv tandem_byvars
	if test "${tandem_pass}" = "1"; then setenv tandem_byvars 1; fi
	if test "${tandem_pass}" = "2" -a "x${tandem_failed}" != "x"; then setenv tandem_byvars 1; fi
	if test "${tandem_byvars}" = "1"; then
		for g in ${tandem_order}; do
			if test "x${tandem_slot}" = "x" -a "${g}" != "${tandem_failed}"; then
				if test "${g}" = "a"; then
					setenv tandem_ok "${TANDEM_A_OK}"
					setenv tandem_tries "${TANDEM_A_TRIES}"
				else
					setenv tandem_ok "${TANDEM_B_OK}"
					setenv tandem_tries "${TANDEM_B_TRIES}"
				fi
				if test "${tandem_ok}" != "0"; then
					if test "x${tandem_tries}" = "x"; then
						setenv tandem_slot ${g}
					elif test "${tandem_tries}" -gt 0; then
						setexpr tandem_tries ${tandem_tries} - 1
						if test "${g}" = "a"; then
							setenv TANDEM_A_TRIES ${tandem_tries}
						else
							setenv TANDEM_B_TRIES ${tandem_tries}
						fi
						setenv tandem_slot ${g}
						setenv tandem_trial 1
					fi
				fi
			fi
		done
		if test "${tandem_trial}" = "1"; then
			# Persist the used try before anything else can fail or hang.
			# Every variable the file holds is written back (export sorts
			# them as the agent does), so only the counter's digit changes.
			env export -t ${tandem_envaddr} TANDEM_ORDER TANDEM_A_OK TANDEM_A_TRIES TANDEM_A_VERITY TANDEM_B_OK TANDEM_B_TRIES TANDEM_B_VERITY
			if fatwrite ${devtype} ${devnum}:${tandem_bootpart} ${tandem_envaddr} ${tandem_envfile} ${filesize}; then
				echo "tandem: trial of slot ${tandem_slot}, ${tandem_tries} tries left after this one"
			else
				# Booting a trial whose try was not counted could loop forever.
				echo "tandem: cannot save ${tandem_envfile}; not booting the trial of slot ${tandem_slot}"
				setenv tandem_failed ${tandem_slot}
				setenv tandem_slot
			fi
		fi
	elif test "${tandem_pass}" = "3"; then
		echo "tandem: last resort: no bootable slot group in ${tandem_envfile} loads; trying ${tandem_order}"
		setenv tandem_slot ${tandem_first_group}
	elif test "${tandem_pass}" = "4"; then
		setenv tandem_slot ${tandem_second_group}
	fi
	if test "x${tandem_slot}" != "x"; then
		if test "${tandem_slot}" = "b"; then
			setenv tandem_part ${tandem_part_b}
			setenv tandem_verity "${TANDEM_B_VERITY}"
		else
			setenv tandem_part ${tandem_part_a}
			setenv tandem_verity "${TANDEM_A_VERITY}"
		fi
		echo "tandem: booting slot ${tandem_slot} from ${devtype} ${devnum}:${tandem_part}"
		# The slot's own kernel arguments: a text env file in the slot whose
		# tandem_bootargs (only that) replaces the board's (like GRUB's
		# /boot/tandem.cfg), e.g. "console=ttyAMA0 panic=5".
		setenv tandem_bootargs "${tandem_board_bootargs}"
		if load ${devtype} ${devnum}:${tandem_part} ${tandem_envaddr} /boot/tandem-args.env; then
			env import -t ${tandem_envaddr} ${filesize} tandem_bootargs
		fi
		# The initramfs takes the partition with this GPT unique GUID, and
		# the data partition from the same disk only.
		setenv tandem_root
		if part uuid ${devtype} ${devnum}:${tandem_part} tandem_partuuid; then
			setenv tandem_root "root=PARTUUID=${tandem_partuuid} rootwait"
		fi
		if load ${devtype} ${devnum}:${tandem_part} ${kernel_addr_r} /boot/vmlinuz; then
			setenv kernel_comp_size ${filesize}
			if load ${devtype} ${devnum}:${tandem_part} ${ramdisk_addr_r} /boot/initrd.img; then
				setenv bootargs "${tandem_root} ro tandem.slot=${tandem_slot} ${tandem_bootargs} ${tandem_verity}"
				echo "tandem: bootargs ${bootargs}"
				booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
			fi
		fi
		echo "tandem: slot ${tandem_slot} failed to load"
		setenv tandem_failed ${tandem_slot}
	fi
done
echo "tandem: no slot group loads; resetting"
sleep 3
reset
