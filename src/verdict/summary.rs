//! A VM's overall verdict from its parts: the worst state wins.

use super::{Code, ServiceState, Verdict};
use crate::report::{NicReport, TargetReport};

/// The VM's verdict: the worst of agent, NICs (in MAC order) and external;
/// the first component with that state gives the code and the reason.
pub fn summarize(agent: &Verdict, nics: &[NicReport], external: Option<&TargetReport>) -> Verdict {
    let mut worst: Option<(ServiceState, Code, String)> = None;
    let mut consider = |verdict: &Verdict, label: Option<String>| {
        if worst.as_ref().is_some_and(|(s, _, _)| *s >= verdict.state) {
            return;
        }
        let reason = match label {
            Some(label) => format!("{label}: {}", verdict.reason),
            None => verdict.reason.clone(),
        };
        worst = Some((verdict.state, verdict.code, reason));
    };
    consider(agent, None);
    for nic in nics {
        // An agent failure already explains every NIC.
        if nic.verdict == *agent {
            continue;
        }
        let label = nic.name.clone().unwrap_or_else(|| nic.mac.clone());
        consider(&nic.verdict, Some(label));
    }
    if let Some(ext) = external {
        if ext.verdict != *agent {
            consider(&ext.verdict, None);
        }
    }
    let Some((state, code, reason)) = worst else {
        return agent.clone();
    };
    if state != ServiceState::Ok {
        return Verdict::new(state, code, reason);
    }
    // An OK agent verdict with a code of its own (maintenance, migrating,
    // booting, a pause set to OK) is what the VM is: no NIC was checked.
    if agent.code != Code::Ok {
        return agent.clone();
    }
    let pinged = nics.iter().filter(|n| n.verdict.code == Code::Ok).count();
    let mut parts = vec![format!(
        "{} NIC{}",
        nics.len(),
        if nics.len() == 1 { "" } else { "s" }
    )];
    if pinged > 0 {
        parts.push(format!(
            "{pinged} gateway{} reachable",
            if pinged == 1 { "" } else { "s" }
        ));
    }
    if let Some(ext) = external {
        parts.push(ext.verdict.reason.clone());
    }
    Verdict::new(ServiceState::Ok, Code::Ok, parts.join(", "))
}
