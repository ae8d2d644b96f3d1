#!/bin/sh
# As the public redis image: `redis-server` or its options alone, without a config file, listen
# on every interface of the container with protected mode off.
set -e
case "$1" in -*) set -- redis-server "$@" ;; esac
if [ "$1" = redis-server ]; then
  shift
  case "${1:-}" in
    */*.conf|*.conf) ;;  # a config file: it says everything
    *) set -- --bind '* -::*' --protected-mode no "$@" ;;
  esac
  set -- redis-server "$@"
fi
exec "$@"
