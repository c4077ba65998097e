# bash completion for connroute(1): subcommands, their options, config files,
# lane names (from the config, read by `connroute check --lanes`), PIDs of
# processes running under connroute, programs for `run`.
_connroute_config()
{
	# the config named on the line, else CONNROUTE_CONFIG, else the system file
	local i
	for ((i = 2; i < ${#COMP_WORDS[@]}; i++)); do
		case ${COMP_WORDS[i]} in
		--config=*) echo "${COMP_WORDS[i]#--config=}"; return ;;
		-c | --config) echo "${COMP_WORDS[i + 1]}"; return ;;
		*.conf) [[ ${COMP_WORDS[1]} == check ]] && { echo "${COMP_WORDS[i]}"; return; } ;;
		esac
	done
	echo "${CONNROUTE_CONFIG:-/etc/connroute.conf}"
}

_connroute_lanes()
{
	local conf
	conf=$(_connroute_config)
	[[ -r $conf ]] && connroute check --lanes -- "$conf" 2>/dev/null
}

_connroute_pids()
{
	local p
	for p in /proc/[0-9]*; do
		grep -qsa libconnroute "$p/maps" 2>/dev/null && echo "${p#/proc/}"
	done
}

_connroute()
{
	local cur prev words cword
	if declare -F _init_completion >/dev/null; then
		_init_completion -s || return
	else
		cur=${COMP_WORDS[COMP_CWORD]}
		prev=${COMP_WORDS[COMP_CWORD - 1]}
		cword=$COMP_CWORD
	fi
	local cmds="run check doctor stats reload help"
	if ((COMP_CWORD == 1)); then
		COMPREPLY=($(compgen -W "$cmds --version --help" -- "$cur"))
		return
	fi
	local cmd=${COMP_WORDS[1]}
	case $cmd in
	run)
		# after the command, complete the command's own arguments
		local i
		for ((i = 2; i < COMP_CWORD; i++)); do
			if [[ ${COMP_WORDS[i]} == -- ]] || [[ ${COMP_WORDS[i]} != -* && ${COMP_WORDS[i - 1]} != @(-k|--key|-c|--config|-l|--log) ]]; then
				if declare -F _command_offset >/dev/null; then
					_command_offset $((i + (${COMP_WORDS[i]} == -- ? 1 : 0)))
				else
					COMPREPLY=($(compgen -f -- "$cur"))
				fi
				return
			fi
		done
		case $prev in
		-k | --key) COMPREPLY=($(compgen -W "$(_connroute_lanes)" -- "$cur")); return ;;
		-c | --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
		-l | --log) COMPREPLY=($(compgen -W "error warn info debug" -- "$cur")); return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--key --config --no-config --log --strict --quiet --help --" -- "$cur"))
		else
			COMPREPLY=($(compgen -c -- "$cur"))
		fi
		;;
	check)
		case $prev in
		-k | --key) COMPREPLY=($(compgen -W "$(_connroute_lanes)" -- "$cur")); return ;;
		-c | --config) COMPREPLY=($(compgen -f -- "$cur")); return ;;
		--host | --thread) return ;;
		esac
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--as-root --as-user --quiet --key --host --thread --lanes --config --help" -- "$cur"))
		else
			COMPREPLY=($(compgen -f -- "$cur"))
		fi
		;;
	doctor)
		if [[ $cur == -* ]]; then
			COMPREPLY=($(compgen -W "--help" -- "$cur"))
		else
			COMPREPLY=($(compgen -W "$(_connroute_pids)" -- "$cur") $(compgen -c -- "$cur"))
		fi
		;;
	stats | reload)
		if [[ $cur == -* ]]; then
			if [[ $cmd == stats ]]; then
				COMPREPLY=($(compgen -W "--watch --count --raw --json --help" -- "$cur"))
			else
				COMPREPLY=($(compgen -W "--help" -- "$cur"))
			fi
		else
			COMPREPLY=($(compgen -W "$(_connroute_pids)" -- "$cur"))
		fi
		;;
	help)
		COMPREPLY=($(compgen -W "run check doctor stats reload" -- "$cur"))
		;;
	esac
}
complete -F _connroute connroute
