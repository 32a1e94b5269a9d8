//! What the guest is: its OS (`guest-get-osinfo`, else whether `cmd.exe`
//! runs) and whether its filesystems are frozen.

use super::*;

/// The OS from `guest-get-osinfo`; where that is missing, the original
/// method: `cmd.exe` runs on Windows and cannot be found on Linux.
pub(super) fn detect_os(
    agent: &mut Agent<'_>,
    info: &GuestInfo,
    may_exec: bool,
) -> Result<GuestOs, AgentError> {
    if info.supports("guest-get-osinfo") {
        match agent.osinfo() {
            Ok(os) if os.is_windows() => return Ok(GuestOs::Windows),
            Ok(os) if os.id.is_some() || os.kernel_release.is_some() => return Ok(GuestOs::Linux),
            Ok(_) => {}
            Err(e) if exec::is_session_fatal(&e) => return Err(e),
            Err(_) => {}
        }
    }
    if !may_exec {
        return Ok(GuestOs::Unknown);
    }
    let args = ["/c".to_string(), "ver".to_string()];
    let until = agent
        .deadline()
        .min(Instant::now() + Duration::from_secs(5));
    match exec::run_and_wait(agent, "cmd.exe", &args, None, until) {
        Ok(_) => Ok(GuestOs::Windows),
        Err(e) if e.is_missing_program() => Ok(GuestOs::Linux),
        Err(e) if exec::is_session_fatal(&e) => Err(e),
        Err(_) => Ok(GuestOs::Unknown),
    }
}

impl VmProbe<'_> {
    /// Asks the agent whether the guest's filesystems are frozen, when a
    /// command this probe needs was refused: a frozen qemu-ga refuses all
    /// but a few commands (`guest-fsfreeze-status` among them). True when
    /// frozen; the probe then stops asking.
    pub(super) fn check_frozen(
        &mut self,
        agent: &mut Agent<'_>,
        info: &GuestInfo,
    ) -> Result<bool, AgentError> {
        if !info.supports("guest-fsfreeze-status") {
            return Ok(false);
        }
        match agent.fsfreeze_status() {
            Ok(FreezeStatus::Frozen) => {
                self.frozen = true;
                Ok(true)
            }
            Ok(FreezeStatus::Thawed) => Ok(false),
            Err(e) if exec::is_session_fatal(&e) => Err(e),
            Err(_) => Ok(false),
        }
    }

    /// [`Self::check_frozen`] with this run's `guest-info`.
    pub(super) fn frozen_since(&mut self, agent: &mut Agent<'_>) -> Result<bool, AgentError> {
        match self.info.clone() {
            Some(info) => self.check_frozen(agent, &info),
            None => Ok(false),
        }
    }

    /// A frozen agent explains the agent and every check (nothing could be
    /// asked), except what the host knows by itself (a link down).
    pub(super) fn mark_frozen(&mut self) {
        let verdict = self.cfg.policy.verdict(&Finding::Frozen);
        self.agent = verdict;
        for nic in &mut self.nics {
            if nic.finding != Some(Finding::LinkDown) {
                nic.finding = Some(Finding::Frozen);
            }
        }
        if let Some((_, slot)) = &mut self.external {
            *slot = Some(Finding::Frozen);
        }
    }
}
