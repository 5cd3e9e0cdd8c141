# Fault injection for tests (`hack/testenv.sh restart|stop|start|pause|resume COMPONENT`): one
# component restarted on the same ports and data (moto keeps its state in memory, so restarting it
# resets it), or frozen and thawed (an outage that keeps its state). Sourced by hack/testenv.sh.

cmd_component() {
  local action=$1 name=${2:-}
  case " ${CONTROL_COMPONENTS[*]} ${NODE_COMPONENTS[*]} " in *" $name "*) ;; *) usage; exit 2 ;; esac
  [ -n "$name" ] || { usage; exit 2; }
  [ -f "$STATE/$name.cmd" ] || die "$name was not started by 'up' in $STATE"
  case "$action" in
    pause) is_ours "$name" && kill -STOP "$(cat "$STATE/$name.pid")"; log "paused $name" ;;
    resume) is_ours "$name" && kill -CONT "$(cat "$STATE/$name.pid")"; log "resumed $name" ;;
    stop) stop "$name" ;;
    start|restart)
      [ "$action" = restart ] && stop "$name"
      is_ours "$name" && { log "$name is already running"; return 0; }
      local args=()
      mapfile -d '' args <"$STATE/$name.cmd"
      start "$name" "${args[@]}"
      wait_for "$name" "$name" 600 health "$name"
      log "started $name again" ;;
  esac
}

