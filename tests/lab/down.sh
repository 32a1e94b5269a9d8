#!/bin/bash
exec "$(dirname "$0")/lab.sh" down "$@"
