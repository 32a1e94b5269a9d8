//! The VM's NICs as the guest sees them: which guest interface carries each
//! host-side NIC (of several with its MAC: the one with the route, else the
//! one with addresses), its type, and the findings decided before any ping.

use super::*;

/// A NIC while its probe is under way.
pub(super) struct NicProbe {
    pub(super) mac: String,
    pub(super) config: Option<NicConfig>,
    /// The guest interface that carries the NIC's traffic: of those with
    /// its MAC, the one with the default route, else the one with addresses.
    pub(super) guest: Option<GuestInterface>,
    /// Every guest interface with the NIC's MAC, in the agent's order.
    pub(super) candidates: Vec<GuestInterface>,
    pub(super) kind: NicKind,
    pub(super) gateway: Option<(IpAddr, GatewaySource)>,
    /// Further next hops of an ECMP default route: checked like the first.
    pub(super) more_gateways: Vec<IpAddr>,
    pub(super) finding: Option<Finding>,
}

/// NICs a VM may have for its gateways to be remembered between runs.
pub(super) const MAX_MEMO_NICS: usize = 16;

/// How much an interface looks like the one carrying traffic: a routable
/// address beats a link-local one beats none.
pub(super) fn address_rank(iface: &GuestInterface) -> u8 {
    if iface.ips.iter().any(|(ip, _)| routable(*ip)) {
        2
    } else {
        u8::from(!iface.ips.is_empty())
    }
}

/// Neither loopback nor link-local.
pub(super) fn routable(ip: IpAddr) -> bool {
    !ip.is_loopback() && !ping::is_link_local(ip)
}

/// The candidate with the best [`address_rank`]; the first of equals.
pub(super) fn best_by_address<'g>(
    candidates: impl DoubleEndedIterator<Item = &'g GuestInterface>,
) -> Option<&'g GuestInterface> {
    candidates.rev().max_by_key(|c| address_rank(c))
}

impl NicProbe {
    pub(super) fn new(mac: String, config: Option<NicConfig>, kind: NicKind) -> NicProbe {
        NicProbe {
            mac,
            config,
            guest: None,
            candidates: Vec::new(),
            kind,
            gateway: None,
            more_gateways: Vec::new(),
            finding: None,
        }
    }

    /// Takes the guest interfaces with this NIC's MAC.
    pub(super) fn set_candidates(&mut self, candidates: Vec<GuestInterface>) {
        self.guest = best_by_address(candidates.iter()).cloned();
        self.candidates = candidates;
    }

    /// Every gateway to ping, the first one first.
    pub(super) fn gateways(&self) -> Vec<IpAddr> {
        self.gateway
            .iter()
            .map(|(gw, _)| *gw)
            .chain(self.more_gateways.iter().copied())
            .collect()
    }

    pub(super) fn ips(&self) -> Vec<IpAddr> {
        self.guest
            .as_ref()
            .map(|g| g.ips.iter().map(|(ip, _)| *ip).collect())
            .unwrap_or_default()
    }

    /// The guest's interface name. Never the host's tap device: a name that
    /// changed when the agent came up would rename monitoring items.
    pub(super) fn name(&self) -> Option<String> {
        self.guest.as_ref().map(|g| g.name.clone())
    }
}

/// The NIC's type: the VM's own setting for its MAC, else whether it is on
/// one of `--external-network`.
pub(super) fn classify_kind(
    cfg: &ProbeConfig,
    settings: &VmSettings,
    mac: &str,
    names: &[Option<&str>],
) -> NicKind {
    if let Some((_, kind)) = settings.nic_kinds.iter().find(|(m, _)| m == mac) {
        return *kind;
    }
    let external = names
        .iter()
        .flatten()
        .any(|name| cfg.external_networks.iter().any(|n| n == name));
    if external {
        NicKind::External
    } else {
        NicKind::Internal
    }
}

impl VmProbe<'_> {
    /// The external ping applies unless `--external-network` is in use and
    /// this VM has no NIC on such a network.
    pub(super) fn update_external_applicability(&mut self) {
        // The VM's own external address replaces `--external`; none is
        // pinged under `--no-exec` either way.
        let address = self
            .cfg
            .external
            .map(|default| self.settings.external.unwrap_or(default));
        let kinds_set =
            !self.cfg.external_networks.is_empty() || !self.settings.nic_kinds.is_empty();
        let applies = address.is_some()
            && !self.cfg.no_exec
            && (!kinds_set || self.nics.iter().any(|n| n.kind == NicKind::External));
        self.external = match (applies, address) {
            (true, Some(addr)) => Some((addr, self.external.take().and_then(|(_, f)| f))),
            _ => None,
        };
    }

    pub(super) fn read_interfaces(
        &mut self,
        agent: &mut Agent<'_>,
        info: &GuestInfo,
    ) -> Result<(), AgentError> {
        let host_macs: Vec<String> = self.nics.iter().map(|n| n.mac.clone()).collect();
        let interfaces = if info.supports("guest-network-get-interfaces") {
            match agent.interfaces(&host_macs) {
                Ok(list) => {
                    self.dropped_interfaces = list.dropped;
                    list.kept
                }
                Err(e) if exec::is_session_fatal(&e) => return Err(e),
                // Refused after guest-info listed it: frozen since?
                Err(AgentError::Disabled { .. }) if self.check_frozen(agent, info)? => {
                    return Ok(());
                }
                Err(e) => {
                    let finding = Finding::Agent(e);
                    for nic in &mut self.nics {
                        nic.finding = Some(finding.clone());
                    }
                    return Ok(());
                }
            }
        } else {
            let finding = Finding::Agent(AgentError::NotFound {
                command: "guest-network-get-interfaces".into(),
            });
            for nic in &mut self.nics {
                nic.finding = Some(finding.clone());
            }
            return Ok(());
        };
        let with_mac = |mac: &str| -> Vec<GuestInterface> {
            interfaces
                .iter()
                .filter(|g| g.mac.as_deref() == Some(mac))
                .cloned()
                .collect()
        };
        if self.nics.is_empty() {
            // No host-side NIC list (socket mode): the guest's MACs are the NICs.
            let mut macs: Vec<&str> = interfaces
                .iter()
                .filter_map(|g| g.mac.as_deref())
                .filter(|m| *m != crate::qga::interfaces::ZERO_MAC)
                .collect();
            macs.sort_unstable();
            macs.dedup();
            for mac in macs {
                let mut nic = NicProbe::new(mac.to_string(), None, NicKind::Internal);
                nic.set_candidates(with_mac(mac));
                let names: Vec<Option<&str>> = nic
                    .candidates
                    .iter()
                    .map(|g| Some(g.name.as_str()))
                    .collect();
                nic.kind = classify_kind(self.cfg, &self.settings, mac, &names);
                self.nics.push(nic);
            }
            self.update_external_applicability();
        } else {
            for nic in &mut self.nics {
                // Matched by MAC: guest names (eth0, "Ethernet 2") never match host tap names.
                let candidates = with_mac(&nic.mac);
                nic.set_candidates(candidates);
                if nic.guest.is_none() {
                    nic.finding = Some(Finding::NicMissing);
                }
            }
        }
        Ok(())
    }

    /// Settles every NIC that will not be pinged, and says why.
    pub(super) fn decide_before_ping(&mut self, exec_enabled: bool) {
        for nic in &mut self.nics {
            if nic.finding.is_some() {
                continue;
            }
            let link_down = nic.config.as_ref().is_some_and(|c| c.link_down);
            nic.finding = if link_down {
                Some(Finding::LinkDown)
            } else if nic.ips().is_empty() {
                Some(Finding::NoAddress)
            } else if nic.gateway.is_none() {
                Some(Finding::NoGateway)
            } else if self.cfg.no_exec {
                let ips: Vec<String> = nic.ips().iter().map(ToString::to_string).collect();
                Some(Finding::NotChecked(format!(
                    "up, {} (--no-exec)",
                    ips.join(" ")
                )))
            } else if !exec_enabled {
                Some(Finding::ExecDisabled)
            } else {
                None
            };
        }
        if let Some((_, slot @ None)) = &mut self.external {
            if !exec_enabled {
                *slot = Some(Finding::ExecDisabled);
            }
        }
    }

    /// Records a check's finding. A NIC with several next hops keeps the
    /// worst, and its reported gateway becomes the one that finding is about.
    pub(super) fn settle(&mut self, slot: Option<usize>, finding: Finding) {
        let policy = &self.cfg.policy;
        match slot {
            Some(i) => {
                let Some(nic) = self.nics.get_mut(i) else {
                    return;
                };
                let worse = nic
                    .finding
                    .as_ref()
                    .is_none_or(|old| policy.verdict(&finding).state > policy.verdict(old).state);
                if !worse {
                    return;
                }
                if let Finding::Reachable(PingTarget::Gateway(gw), _)
                | Finding::Unreachable(PingTarget::Gateway(gw), _) = &finding
                {
                    let mut hops = nic.gateways();
                    if let (Some(pos), Some((_, source))) =
                        (hops.iter().position(|h| h == gw), nic.gateway)
                    {
                        let chosen = hops.remove(pos);
                        nic.gateway = Some((chosen, source));
                        nic.more_gateways = hops;
                    }
                }
                nic.finding = Some(finding);
            }
            None => {
                if let Some((_, f)) = &mut self.external {
                    *f = Some(finding);
                }
            }
        }
    }
}
