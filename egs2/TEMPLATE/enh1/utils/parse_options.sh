#!/usr/bin/env bash
# Parses --option value (or --option=value) arguments into the shell variables that the
# calling script declared before sourcing this file: `--nj 4` sets nj=4, `--enh-config x`
# sets enh_config=x. An option whose variable is not declared is an error, so a typo
# never passes silently. Positional arguments are left in "$@". Source it, don't run it.
# `--help` prints the caller's header comment (the lines starting with "# " at its top).
#
# Renamed options: a caller that declares the associative array `option_aliases`
# (old name -> new name, e.g. option_aliases=([train_config]=enh_config)) still accepts
# the old name; it sets the new variable and prints one deprecation line per old name.

__positional=()
__warned=" "
while [ $# -gt 0 ]; do
  case "$1" in
    --help|-h)
      sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"
      exit 0 ;;
    --*=*)
      __name=${1%%=*}; __value=${1#*=}; shift ;;
    --*)
      __name=$1
      if [ $# -lt 2 ]; then echo "$0: option $1 needs a value" >&2; exit 1; fi
      __value=$2; shift 2 ;;
    *)
      __positional+=("$1"); shift; continue ;;
  esac
  __var=${__name#--}; __var=${__var//-/_}
  if declare -p option_aliases >/dev/null 2>&1 && [ -n "${option_aliases[$__var]:-}" ]; then
    if [[ $__warned != *" $__var "* ]]; then
      echo "${0##*/}: --$__var is deprecated, use --${option_aliases[$__var]}" \
        "(ESPnet's name); it works the same" >&2
      __warned+="$__var "
    fi
    __var=${option_aliases[$__var]}
  fi
  if ! declare -p "$__var" >/dev/null 2>&1; then
    echo "$0: unknown option $__name (no variable '$__var'); see $0 --help" >&2
    exit 1
  fi
  printf -v "$__var" '%s' "$__value"
done
set -- "${__positional[@]+"${__positional[@]}"}"
unset __positional __name __value __var __warned
