//! What a probe leaves behind: the VM's report, and what it learned for
//! later runs (handed to the fact book, or forgotten when the agent failed).

use super::*;

impl VmProbe<'_> {
    /// Hands what this run learned to the fact book.
    pub(super) fn remember(&mut self) {
        let (Some(book), Some(key), Some(info)) = (&self.cfg.facts, &self.key, &self.info) else {
            return;
        };
        if self.os == GuestOs::Unknown {
            return book.learn(key.clone(), FactUpdate::Forget);
        }
        let facts = AgentFacts {
            version: info.version.clone(),
            commands: crate::memory::facts::commands_fingerprint(&info.commands),
            os: self.os,
            ping_path: self.ping_path.clone(),
            routes: self.routes.clone(),
        };
        book.learn(key.clone(), FactUpdate::Store(facts));
    }

    pub(super) fn forget(&self) {
        if let (Some(book), Some(key)) = (&self.cfg.facts, &self.key) {
            book.learn(key.clone(), FactUpdate::Forget);
        }
    }

    pub(super) fn into_report(self, target: &VmTarget, started: Instant) -> VmReport {
        let policy = &self.cfg.policy;
        let nics: Vec<NicReport> = self
            .nics
            .into_iter()
            .map(|nic| {
                let finding = nic.finding.clone().unwrap_or(Finding::NoGateway);
                let rtt_ms = finding.rtt_ms();
                NicReport {
                    name: nic.name(),
                    ips: nic.ips(),
                    host_dev: nic.config.as_ref().and_then(|c| c.host_dev.clone()),
                    network: nic
                        .config
                        .as_ref()
                        .and_then(|c| c.network.clone().or_else(|| c.bridge.clone())),
                    gateway: nic.gateway.map(|(gw, _)| gw),
                    gateway_source: nic.gateway.map(|(_, source)| source),
                    kind: nic.kind,
                    verdict: policy.verdict(&finding),
                    rtt_ms,
                    mac: nic.mac,
                }
            })
            .collect();
        let external = self.external.map(|(address, finding)| {
            let finding = finding.unwrap_or(Finding::PingError("not run".into()));
            let rtt_ms = finding.rtt_ms();
            TargetReport {
                address,
                verdict: policy.verdict(&finding),
                rtt_ms,
            }
        });
        // The report's order (NICs by MAC): renderers keep it, and the
        // summary's first worst component is the same whatever the XML order.
        let mut nics = nics;
        nics.sort_by(|a, b| a.mac.cmp(&b.mac));
        let verdict = summarize(&self.agent, &nics, external.as_ref());
        let mut agent = self.agent;
        if self.dropped_interfaces > 0 {
            // Bounded on purpose (memory), and said so.
            agent.reason = format!(
                "{}; {} more guest interfaces not checked (at most {} NICs)",
                agent.reason,
                self.dropped_interfaces,
                crate::qga::interfaces::MAX_GUEST_NICS
            );
        }
        VmReport {
            name: target.name.clone(),
            uuid: target.uuid.clone(),
            os: self.os,
            verdict,
            agent: AgentReport {
                verdict: agent,
                version: self.agent_version,
                exec_enabled: self.exec_enabled,
            },
            nics,
            external,
            duration_ms: started.elapsed().as_secs_f64() * 1000.0,
            agent_commands: self.agent_commands,
            agent_execs: self.agent_execs,
            cloud: target.cloud.clone(),
        }
    }
}
