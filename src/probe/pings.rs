//! Every ping of a VM started at once (gateways and the external address),
//! then polled with `guest-exec-status` until each has its finding.

use super::*;

/// Which ping binary works in this guest, learned on the first exec.
#[derive(Debug, Clone, Copy)]
pub(super) enum PingFlavor {
    Linux(usize),
    Windows,
}

pub(super) enum StartError {
    Fatal(AgentError),
    Finding(Finding),
}

pub(super) fn start_ping(
    agent: &mut Agent<'_>,
    flavor: &mut PingFlavor,
    target: PingTarget,
    arg: &str,
    timeout: Duration,
) -> Result<i64, StartError> {
    let addr = match target {
        PingTarget::Gateway(a) | PingTarget::External(a) => a,
    };
    loop {
        let result = match *flavor {
            PingFlavor::Windows => agent.exec(
                ping::WINDOWS_PING_PATH,
                &ping::windows_args(addr, arg, timeout),
                None,
            ),
            PingFlavor::Linux(i) => {
                let Some(path) = ping::LINUX_PING_PATHS.get(i) else {
                    return Err(StartError::Finding(Finding::PingMissing));
                };
                agent.exec(path, &ping::linux_args(arg, timeout), Some(ping::LINUX_ENV))
            }
        };
        match result {
            Ok(pid) => return Ok(pid),
            Err(e) if exec::is_session_fatal(&e) => return Err(StartError::Fatal(e)),
            Err(AgentError::Disabled { .. }) => {
                return Err(StartError::Finding(Finding::ExecDisabled))
            }
            Err(e) if e.is_missing_program() => match flavor {
                PingFlavor::Linux(i) => *i += 1,
                PingFlavor::Windows => return Err(StartError::Finding(Finding::PingMissing)),
            },
            Err(e @ AgentError::ExecDenied { .. }) => {
                return Err(StartError::Finding(Finding::Agent(e)))
            }
            Err(e) => return Err(StartError::Finding(Finding::PingError(e.to_string()))),
        }
    }
}

impl VmProbe<'_> {
    /// Starts every pending ping, then polls them together.
    pub(super) fn ping_all(&mut self, agent: &mut Agent<'_>) -> Result<(), AgentError> {
        // Slot: Some(i) = NIC i's gateway, None = the external target.
        let mut pending: Vec<(Option<usize>, PingTarget, String)> = Vec::new();
        let mut refused: Vec<(usize, Finding)> = Vec::new();
        let own: Vec<IpAddr> = self
            .nics
            .iter()
            .flat_map(|n| {
                n.candidates
                    .iter()
                    .flat_map(|g| g.ips.iter().map(|(ip, _)| *ip))
            })
            .collect();
        for (i, nic) in self.nics.iter().enumerate() {
            if nic.finding.is_some() {
                continue;
            }
            let zone = nic.guest.as_ref().map(|g| g.name.as_str());
            for gw in nic.gateways() {
                // The guest would answer itself: no check of the path out.
                let invalid = if gw.is_loopback() {
                    Some("loopback")
                } else if own.contains(&gw) {
                    Some("the guest's own address")
                } else {
                    None
                };
                if let Some(why) = invalid {
                    refused.push((i, Finding::GatewayInvalid(gw, why)));
                    continue;
                }
                match ping::target_argument(gw, zone) {
                    Ok(arg) => pending.push((Some(i), PingTarget::Gateway(gw), arg)),
                    Err(e) => refused.push((i, Finding::PingError(e))),
                }
            }
        }
        for (i, finding) in refused {
            self.settle(Some(i), finding);
        }
        if let Some((addr, slot @ None)) = &mut self.external {
            match ping::target_argument(*addr, None) {
                Ok(arg) => pending.push((None, PingTarget::External(*addr), arg)),
                Err(e) => *slot = Some(Finding::PingError(e)),
            }
        }
        if pending.is_empty() {
            return Ok(());
        }

        // Start with the ping binary that worked last time; if it is gone,
        // search the whole list once more.
        let remembered = self
            .ping_path
            .as_deref()
            .and_then(|p| ping::LINUX_PING_PATHS.iter().position(|c| *c == p))
            .unwrap_or(0);
        let mut rescan = remembered > 0;
        let mut flavor = match self.os {
            GuestOs::Windows => PingFlavor::Windows,
            _ => PingFlavor::Linux(remembered),
        };
        let mut started: Vec<(Option<usize>, PingTarget, i64)> = Vec::new();
        for (slot, target, arg) in pending {
            if stop::requested() {
                // Collect what runs; start nothing more.
                self.interrupted = true;
                break;
            }
            let timeout = self.cfg.ping_timeout;
            let mut result = start_ping(agent, &mut flavor, target, &arg, timeout);
            if rescan && matches!(result, Err(StartError::Finding(Finding::PingMissing))) {
                rescan = false;
                flavor = PingFlavor::Linux(0);
                result = start_ping(agent, &mut flavor, target, &arg, timeout);
            }
            match result {
                Ok(pid) => started.push((slot, target, pid)),
                Err(StartError::Fatal(e)) => return Err(e),
                // guest-info said exec was on: frozen since? (asked once)
                Err(StartError::Finding(Finding::ExecDisabled))
                    if started.is_empty() && !self.frozen && self.frozen_since(agent)? =>
                {
                    return Ok(());
                }
                Err(StartError::Finding(f)) => self.settle(slot, f),
            }
        }
        self.ping_path = match flavor {
            PingFlavor::Linux(i) if !started.is_empty() => {
                ping::LINUX_PING_PATHS.get(i).map(|p| p.to_string())
            }
            _ => None,
        };
        let limit = self.cfg.ping_timeout + PING_GRACE;
        let waiting = Instant::now();
        let until = agent.deadline().min(waiting + limit);
        // The run ends before the pings' own timeout: not their fault.
        let cut_by_deadline = agent.deadline() < waiting + self.cfg.ping_timeout;
        // What the reason says is the time really waited.
        let waited = whole_ms(until.saturating_duration_since(waiting));
        let pids: Vec<i64> = started.iter().map(|(_, _, pid)| *pid).collect();
        let results = exec::wait_all(agent, &pids, until)?;
        for ((slot, target, _), result) in started.into_iter().zip(results) {
            let finding = match result {
                Some(Ok(status)) => match flavor {
                    PingFlavor::Windows => ping::classify_windows(target, &status),
                    PingFlavor::Linux(_) => ping::classify_linux(target, &status),
                },
                Some(Err(e)) => Finding::PingError(e.to_string()),
                // Not the ping's fault when the run ended first.
                None if cut_by_deadline => Finding::TimedOut(self.run_limit),
                None => Finding::PingUnfinished(waited),
            };
            self.settle(slot, finding);
        }
        // A gateway from the routes that did not answer is looked up again
        // next time instead of being trusted.
        let stale = self.nics.iter().any(|n| {
            matches!(
                n.gateway,
                Some((
                    _,
                    GatewaySource::AgentRoute | GatewaySource::GuestRouteTable
                ))
            ) && matches!(n.finding, Some(Finding::Unreachable(..)))
        });
        if stale {
            self.routes = None;
        }
        Ok(())
    }
}
