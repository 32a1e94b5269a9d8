//! vmnetprobe: for every running VM, asks the QEMU guest agent (no guest
//! network involved) to ping the VM's gateways and an external address, and
//! reports the result to Nagios/Icinga, Zabbix or Telegraf.
//!
//! One probe core produces a [`report::Report`]; each renderer in [`output`]
//! is a pure function of it.

pub mod account;
pub mod app;
pub mod cli;
pub mod config;
pub mod inventory;
pub mod memory;
pub mod output;
pub mod probe;
pub mod qga;
pub mod report;
pub mod serve;
pub mod text;
pub mod verdict;
