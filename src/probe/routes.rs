//! Where each NIC's gateways come from: remembered routes, the agent's
//! route command, `ip route`/`ROUTE.EXE` run in the guest, the libvirt
//! network, or `--gateway`.

use super::nics::{best_by_address, routable, MAX_MEMO_NICS};
use super::*;

impl VmProbe<'_> {
    pub(super) fn find_gateways(
        &mut self,
        agent: &mut Agent<'_>,
        info: &GuestInfo,
        may_exec: bool,
    ) -> Result<(), AgentError> {
        if self.nics.iter().all(|n| n.guest.is_none()) {
            return Ok(());
        }
        if !self.gateways_from_memo() {
            let found = if self.os != GuestOs::Windows && info.supports("guest-network-get-route") {
                match agent.routes() {
                    Ok(routes) => {
                        let by_iface = gateway::gateways_from_routes(&routes);
                        self.assign_by_name(&by_iface, GatewaySource::AgentRoute);
                        true
                    }
                    Err(e) if exec::is_session_fatal(&e) => return Err(e),
                    Err(_) => false,
                }
            } else if may_exec {
                self.gateways_from_guest_exec(agent)?
            } else {
                false
            };
            // A VM with many NICs reads its routes every run instead: its
            // memo would make the state file grow with NICs, not VMs.
            let small = self.nics.iter().filter(|n| n.guest.is_some()).count() <= MAX_MEMO_NICS;
            self.routes = (found && small).then(|| self.route_memo(now_ms()));
        }
        for nic in &mut self.nics {
            if nic.gateway.is_some() {
                continue;
            }
            let ips = nic.ips();
            if let Some(net) = nic.config.as_ref() {
                if let Some(gw) = gateway::gateway_from_network(&net.network_addresses, &ips) {
                    nic.gateway = Some((gw, GatewaySource::LibvirtNetwork));
                }
            }
        }
        self.assign_fallback_gateway();
        Ok(())
    }

    /// Uses the gateways an earlier run found in the guest's routes, while
    /// they are younger than [`ROUTE_TTL`] and every NIC still has the
    /// addresses it had then. True when they were used.
    pub(super) fn gateways_from_memo(&mut self) -> bool {
        let Some(memo) = self.known.as_ref().and_then(|f| f.routes.clone()) else {
            return false;
        };
        let ttl = u64::try_from(ROUTE_TTL.as_millis()).unwrap_or(u64::MAX);
        if now_ms().saturating_sub(memo.learned_ms) >= ttl {
            return false;
        }
        let current = self.nics.iter().filter(|n| n.guest.is_some());
        let unchanged = current
            .clone()
            .all(|n| memo.nics.get(&n.mac).is_some_and(|e| e.ips == n.ips()));
        if !unchanged || current.count() != memo.nics.len() {
            return false;
        }
        for nic in &mut self.nics {
            if let Some(entry) = memo.nics.get(&nic.mac) {
                nic.gateway = entry.gateway.zip(entry.source);
                nic.more_gateways = entry.more.clone();
            }
        }
        self.routes = Some(memo);
        true
    }

    /// The gateways just found in the guest's routes, per NIC.
    pub(super) fn route_memo(&self, learned_ms: u64) -> RouteMemo {
        let nics = self
            .nics
            .iter()
            .filter(|n| n.guest.is_some())
            .map(|n| {
                let entry = RouteEntry {
                    ips: n.ips(),
                    gateway: n.gateway.map(|(gw, _)| gw),
                    source: n.gateway.map(|(_, source)| source),
                    more: n.more_gateways.clone(),
                };
                (n.mac.clone(), entry)
            })
            .collect();
        RouteMemo { learned_ms, nics }
    }

    /// Gives each NIC the next hops of its interface. Of several guest
    /// interfaces with the NIC's MAC, the one with the default route is
    /// the NIC's (the bridge, bond or VLAN on top, not the member below).
    pub(super) fn assign_by_name(&mut self, by_iface: &gateway::NextHops, source: GatewaySource) {
        for nic in &mut self.nics {
            let hops_of = |g: &GuestInterface| by_iface.get(&g.name).filter(|h| !h.is_empty());
            let routed = match nic.guest.as_ref().filter(|g| hops_of(g).is_some()) {
                Some(current) => Some(current.clone()),
                None => {
                    best_by_address(nic.candidates.iter().filter(|g| hops_of(g).is_some())).cloned()
                }
            };
            let Some(routed) = routed else { continue };
            if let Some((first, more)) = hops_of(&routed).and_then(|h| h.split_first()) {
                nic.gateway = Some((*first, source));
                nic.more_gateways = more.to_vec();
                nic.guest = Some(routed);
            }
        }
    }

    /// Whether some NIC without an IPv4 default route has a routable IPv6
    /// address, so its IPv6 default route is worth one more exec.
    pub(super) fn wants_ipv6_routes(&self, v4: &gateway::NextHops) -> bool {
        self.nics.iter().any(|nic| {
            let routed = nic.candidates.iter().any(|g| v4.contains_key(&g.name));
            !routed
                && nic
                    .candidates
                    .iter()
                    .any(|g| g.ips.iter().any(|(ip, _)| ip.is_ipv6() && routable(*ip)))
        })
    }

    /// Reads the guest's route table; true when it could be read.
    pub(super) fn gateways_from_guest_exec(
        &mut self,
        agent: &mut Agent<'_>,
    ) -> Result<bool, AgentError> {
        let until = agent
            .deadline()
            .min(Instant::now() + self.cfg.command_timeout);
        if self.os == GuestOs::Windows {
            let args = gateway::windows_route_args();
            match exec::run_and_wait(agent, gateway::WINDOWS_ROUTE_PATH, &args, None, until) {
                Ok(Some(status)) => {
                    let by_ip = gateway::gateways_from_route_print(&status.stdout);
                    for nic in &mut self.nics {
                        let gw = nic.ips().iter().find_map(|ip| by_ip.get(ip).copied());
                        if let Some(gw) = gw {
                            nic.gateway = Some((gw, GatewaySource::GuestRouteTable));
                        }
                    }
                    return Ok(status.exit_code == Some(0));
                }
                Err(e) if exec::is_session_fatal(&e) => return Err(e),
                _ => {}
            }
            return Ok(false);
        }
        let args = gateway::linux_route_args();
        for path in gateway::LINUX_IP_PATHS {
            match exec::run_and_wait(agent, path, &args, Some(ping::LINUX_ENV), until) {
                Ok(Some(status)) => {
                    let mut by_iface = gateway::gateways_from_ip_route(&status.stdout);
                    if self.wants_ipv6_routes(&by_iface) {
                        let args6 = gateway::linux_route6_args();
                        match exec::run_and_wait(agent, path, &args6, Some(ping::LINUX_ENV), until)
                        {
                            Ok(Some(v6)) => gateway::merge_ipv6(
                                &mut by_iface,
                                gateway::gateways_from_ip_route(&v6.stdout),
                            ),
                            Err(e) if exec::is_session_fatal(&e) => return Err(e),
                            _ => {}
                        }
                    }
                    self.assign_by_name(&by_iface, GatewaySource::GuestRouteTable);
                    return Ok(status.exit_code == Some(0));
                }
                Ok(None) => return Ok(false),
                Err(e) if e.is_missing_program() => continue,
                Err(e) if exec::is_session_fatal(&e) => return Err(e),
                // Not "no gateway": the guest refused, and says so per NIC.
                Err(e @ AgentError::ExecDenied { .. }) => {
                    for nic in self.nics.iter_mut().filter(|n| n.guest.is_some()) {
                        nic.finding.get_or_insert_with(|| Finding::Agent(e.clone()));
                    }
                    return Ok(false);
                }
                Err(_) => return Ok(false),
            }
        }
        Ok(false)
    }

    pub(super) fn assign_fallback_gateway(&mut self) {
        let Some(gw) = self.cfg.fallback_gateway else {
            return;
        };
        let in_subnet = self.nics.iter().position(|n| {
            n.gateway.is_none()
                && n.guest
                    .as_ref()
                    .is_some_and(|g| gateway::in_nic_subnet(gw, &g.ips))
        });
        let chosen = in_subnet.or_else(|| {
            self.nics
                .iter()
                .position(|n| n.gateway.is_none() && n.guest.is_some())
        });
        if let Some(i) = chosen {
            self.nics[i].gateway = Some((gw, GatewaySource::User));
        }
    }
}
