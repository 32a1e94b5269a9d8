//! What operators and cloud platforms put in a domain's libvirt `<metadata>`,
//! read from the same live domain XML as the NICs. vmnetprobe's own element
//! (namespace [`NAMESPACE`]) carries a per-VM maintenance switch and
//! settings; whoever can write a domain's metadata is not trusted to choose
//! ping arguments, so every value is validated here, before it is used.
//!
//! ```xml
//! <metadata>
//!   <vmnetprobe:probe xmlns:vmnetprobe="urn:vmnetprobe:metadata:1">
//!     <vmnetprobe:maintenance until="2026-12-03T06:00:00Z">kernel update, CHG-1234</vmnetprobe:maintenance>
//!     <vmnetprobe:external>198.51.100.7</vmnetprobe:external>
//!     <vmnetprobe:nic mac="52:54:00:aa:bb:01" type="external"/>
//!   </vmnetprobe:probe>
//! </metadata>
//! ```

use super::VmSettings;
use crate::probe::ping::validate_target;
use crate::qga::protocol::normalize_mac;
use crate::report::{CloudInstance, NicKind};
use crate::text::one_line;
use std::net::IpAddr;

/// The XML namespace of vmnetprobe's metadata element (`virsh metadata
/// --uri`). A URN: it names the format and resolves to nothing.
pub const NAMESPACE: &str = "urn:vmnetprobe:metadata:1";
/// The element name and the prefix `virsh metadata --key` gives it.
pub const KEY: &str = "vmnetprobe";
/// Longest maintenance note kept (it goes into every output's reason).
const MAX_NOTE: usize = 200;
/// More `<nic>` entries than a domain can have NICs is a broken element.
const MAX_NICS: usize = 64;

/// Namespaces of OpenStack Nova's `<nova:instance>` element, one per
/// format version (`…/nova/1.0`, `…/nova/1.1`, ...).
pub const NOVA_NAMESPACE_PREFIX: &str = "http://openstack.org/xmlns/libvirt/nova/";
/// Longest cloud label kept (instance and project names are short).
const MAX_LABEL: usize = 255;

/// Everything read from a domain's `<metadata>`.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainMetadata {
    /// vmnetprobe's own settings; `Err` says what is wrong with them.
    pub vmnetprobe: Result<VmSettings, String>,
    /// The instance's names when OpenStack Nova manages the domain.
    pub cloud: Option<CloudInstance>,
}

impl Default for DomainMetadata {
    fn default() -> Self {
        DomainMetadata {
            vmnetprobe: Ok(VmSettings::default()),
            cloud: None,
        }
    }
}

/// Reads the `<metadata>` child of a `<domain>` element.
pub fn parse_metadata(domain: roxmltree::Node<'_, '_>) -> DomainMetadata {
    let Some(metadata) = domain.children().find(|c| c.has_tag_name("metadata")) else {
        return DomainMetadata::default();
    };
    let ours: Vec<_> = metadata
        .children()
        .filter(|c| c.is_element() && c.tag_name().namespace() == Some(NAMESPACE))
        .collect();
    let vmnetprobe = match ours.as_slice() {
        [] => Ok(VmSettings::default()),
        [one] => parse_settings(*one),
        _ => Err("more than one vmnetprobe metadata element".into()),
    };
    DomainMetadata {
        vmnetprobe,
        cloud: parse_nova(metadata),
    }
}

/// `<nova:instance>`: the display name and the project. Labels only, so a
/// malformed element is ignored rather than failing the VM; the texts are
/// made one line and bounded, as everything from the domain XML.
fn parse_nova(metadata: roxmltree::Node<'_, '_>) -> Option<CloudInstance> {
    let is_nova = |n: &roxmltree::Node<'_, '_>, name: &str| {
        n.is_element()
            && n.tag_name().name() == name
            && n.tag_name()
                .namespace()
                .is_some_and(|ns| ns.starts_with(NOVA_NAMESPACE_PREFIX))
    };
    let instance = metadata.children().find(|c| is_nova(c, "instance"))?;
    let text = |n: roxmltree::Node<'_, '_>| {
        let t = one_line(n.text().unwrap_or(""), MAX_LABEL);
        let t = t.trim();
        (!t.is_empty()).then(|| t.to_string())
    };
    let name = instance
        .children()
        .find(|c| is_nova(c, "name"))
        .and_then(text)?;
    let project = instance
        .children()
        .find(|c| is_nova(c, "owner"))
        .and_then(|owner| owner.children().find(|c| is_nova(c, "project")))
        .and_then(text);
    Some(CloudInstance { name, project })
}

fn invalid(what: impl std::fmt::Display) -> String {
    format!("invalid vmnetprobe metadata: {what}")
}

/// The settings in vmnetprobe's element. Unknown elements are refused: a
/// misspelt `<maintenance>` must not silently leave alerts on.
fn parse_settings(root: roxmltree::Node<'_, '_>) -> Result<VmSettings, String> {
    let mut settings = VmSettings::default();
    for child in root.children().filter(|c| c.is_element()) {
        let text = || one_line(child.text().unwrap_or(""), MAX_NOTE);
        match child.tag_name().name() {
            "maintenance" if settings.maintenance.is_none() => {
                if let Some(until) = child.attribute("until") {
                    let parsed = humantime::parse_rfc3339_weak(until.trim()).map_err(|_| {
                        invalid(format!(
                            "<maintenance until=\"{}\"> is not a time like 2026-12-03T06:00:00Z",
                            one_line(until, 40)
                        ))
                    })?;
                    settings.maintenance_until = Some(parsed);
                }
                settings.maintenance = Some(text());
            }
            "external" if settings.external.is_none() => {
                settings.external = Some(parse_external(&text())?);
            }
            "nic" if settings.nic_kinds.len() < MAX_NICS => {
                let mac = child
                    .attribute("mac")
                    .and_then(normalize_mac)
                    .ok_or_else(|| invalid("<nic> needs mac=\"aa:bb:cc:dd:ee:ff\""))?;
                let kind = match child.attribute("type") {
                    Some("external") => NicKind::External,
                    Some("internal") => NicKind::Internal,
                    other => {
                        let shown = one_line(other.unwrap_or(""), 40);
                        return Err(invalid(format!(
                            "<nic mac=\"{mac}\"> type '{shown}' (expected internal or external)"
                        )));
                    }
                };
                if settings.nic_kinds.iter().any(|(m, _)| *m == mac) {
                    return Err(invalid(format!("<nic mac=\"{mac}\"> given twice")));
                }
                settings.nic_kinds.push((mac, kind));
            }
            "maintenance" | "external" => {
                return Err(invalid(format!(
                    "<{}> given twice",
                    child.tag_name().name()
                )))
            }
            "nic" => return Err(invalid(format!("more than {MAX_NICS} <nic> entries"))),
            other => {
                return Err(invalid(format!(
                    "unknown element <{}>",
                    one_line(other, 40)
                )))
            }
        }
    }
    Ok(settings)
}

/// An IP literal and nothing else, accepted only where `--external` would be.
fn parse_external(text: &str) -> Result<IpAddr, String> {
    let addr: IpAddr = text
        .parse()
        .map_err(|_| invalid(format!("<external> '{text}' is not an IP address")))?;
    validate_target(addr).map_err(|e| invalid(format!("<external>: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(inner: &str) -> Result<VmSettings, String> {
        let xml = format!("<domain><name>x</name><metadata>{inner}</metadata><devices/></domain>");
        let doc = roxmltree::Document::parse(&xml).unwrap();
        parse_metadata(doc.root_element()).vmnetprobe
    }

    fn ours(body: &str) -> String {
        format!("<v:probe xmlns:v=\"{NAMESPACE}\">{body}</v:probe>")
    }

    fn cloud(inner: &str) -> Option<CloudInstance> {
        let xml = format!("<domain><name>x</name><metadata>{inner}</metadata><devices/></domain>");
        let doc = roxmltree::Document::parse(&xml).unwrap();
        parse_metadata(doc.root_element()).cloud
    }

    #[test]
    fn nova_instance_name_and_project_are_read() {
        // As Nova writes it (nova/virt/libvirt/config.py), trimmed.
        let nova = |ns: &str, body: &str| {
            format!("<nova:instance xmlns:nova=\"http://openstack.org/xmlns/libvirt/nova/{ns}\">{body}</nova:instance>")
        };
        let full = nova(
            "1.1",
            "<nova:package version=\"27.1.0\"/><nova:name>web 01</nova:name>\
             <nova:flavor name=\"m1.small\"><nova:memory>2048</nova:memory></nova:flavor>\
             <nova:owner><nova:user uuid=\"u1\">admin</nova:user>\
             <nova:project uuid=\"p1\">shop\nprod</nova:project></nova:owner>",
        );
        assert_eq!(
            cloud(&full),
            Some(CloudInstance {
                name: "web 01".into(),
                project: Some("shop prod".into()),
            })
        );
        assert_eq!(
            cloud(&nova("1.0", "<nova:name>a</nova:name>")),
            Some(CloudInstance {
                name: "a".into(),
                project: None
            })
        );
        // No name, another namespace, or nothing: no labels.
        assert_eq!(cloud(&nova("1.1", "<nova:name> </nova:name>")), None);
        assert_eq!(
            cloud("<x:instance xmlns:x=\"urn:other\"><x:name>a</x:name></x:instance>"),
            None
        );
        assert_eq!(cloud(""), None);
        let long = cloud(&nova(
            "1.1",
            &format!("<nova:name>{}</nova:name>", "n".repeat(5000)),
        ));
        // Cut after MAX_LABEL characters, with an ellipsis.
        assert!(long.is_some_and(|c| c.name.chars().count() == MAX_LABEL + 1));
        // Nova's element next to vmnetprobe's: both are read.
        let both = format!(
            "{}{}",
            nova("1.1", "<nova:name>a</nova:name>"),
            ours("<v:external>198.51.100.7</v:external>")
        );
        assert!(cloud(&both).is_some());
        assert!(parse(&both).is_ok_and(|s| s.external.is_some()));
    }

    #[test]
    fn absent_or_foreign_metadata_is_no_settings() {
        assert_eq!(parse(""), Ok(VmSettings::default()));
        let nova = "<nova:instance xmlns:nova=\"http://openstack.org/xmlns/libvirt/nova/1.1\"><nova:name>web</nova:name></nova:instance>";
        assert_eq!(parse(nova), Ok(VmSettings::default()));
        let doc = roxmltree::Document::parse("<domain><devices/></domain>").unwrap();
        assert_eq!(
            parse_metadata(doc.root_element()).vmnetprobe,
            Ok(VmSettings::default())
        );
    }

    #[test]
    fn settings_as_virsh_writes_them() {
        let got = parse(&ours(
            "<v:maintenance>kernel\n update</v:maintenance><v:external> 198.51.100.7 </v:external>\
             <v:nic mac=\"52:54:00:AA:BB:01\" type=\"external\"/><v:nic mac=\"52:54:00:aa:bb:02\" type=\"internal\"/>",
        ))
        .unwrap();
        assert_eq!(got.maintenance.as_deref(), Some("kernel update"));
        assert_eq!(got.external, Some("198.51.100.7".parse().unwrap()));
        assert_eq!(
            got.nic_kinds,
            vec![
                ("52:54:00:aa:bb:01".to_string(), NicKind::External),
                ("52:54:00:aa:bb:02".to_string(), NicKind::Internal)
            ]
        );
        let empty = parse(&ours("<v:maintenance/>")).unwrap();
        assert_eq!(empty.maintenance.as_deref(), Some(""));
    }

    #[test]
    fn hostile_or_mistyped_values_are_refused_with_a_reason() {
        for (body, want) in [
            ("<v:external>192.0.2.1; reboot</v:external>", "is not an IP address"),
            ("<v:external>-c 1000</v:external>", "is not an IP address"),
            ("<v:external>0.0.0.0</v:external>", "<external>"),
            ("<v:external>224.0.0.1</v:external>", "<external>"),
            ("<v:maintainance/>", "unknown element <maintainance>"),
            ("<v:nic type=\"external\"/>", "needs mac"),
            ("<v:nic mac=\"52:54:00:aa:bb:01\" type=\"dmz\"/>", "type 'dmz'"),
            (
                "<v:nic mac=\"52:54:00:aa:bb:01\" type=\"external\"/><v:nic mac=\"52:54:00:AA:BB:01\" type=\"internal\"/>",
                "given twice",
            ),
            ("<v:external>192.0.2.1</v:external><v:external>192.0.2.2</v:external>", "given twice"),
        ] {
            let err = parse(&ours(body)).unwrap_err();
            assert!(err.starts_with("invalid vmnetprobe metadata: "), "{err}");
            assert!(err.contains(want), "{body}: {err}");
        }
        let twice = format!("{}{}", ours(""), ours(""));
        assert!(parse(&twice).is_err());
        let many: String = (0..=MAX_NICS)
            .map(|i| {
                format!(
                    "<v:nic mac=\"52:54:00:00:00:{:02x}\" type=\"internal\"/>",
                    i
                )
            })
            .collect();
        assert!(parse(&ours(&many)).unwrap_err().contains("more than 64"));
    }

    #[test]
    fn maintenance_until_ends_by_itself() {
        use std::time::{Duration, UNIX_EPOCH};
        let got = parse(&ours(
            "<v:maintenance until=\"2026-12-03T06:00:00Z\">disk swap</v:maintenance>",
        ))
        .unwrap();
        let until = UNIX_EPOCH + Duration::from_secs(1_796_277_600);
        assert_eq!(got.maintenance_until, Some(until));
        assert_eq!(
            got.maintenance_at(until - Duration::from_secs(1))
                .as_deref(),
            Some("disk swap, until 2026-12-03T06:00:00Z")
        );
        assert_eq!(got.maintenance_at(until), None, "over: probed as usual");
        let bare = parse(&ours("<v:maintenance/>")).unwrap();
        assert_eq!(bare.maintenance_at(until).as_deref(), Some(""));
        let err = parse(&ours("<v:maintenance until=\"tomorrow\"/>")).unwrap_err();
        assert!(err.contains("until=\"tomorrow\""), "{err}");
    }

    #[test]
    fn a_long_or_multiline_note_becomes_one_bounded_line() {
        let long = "x".repeat(1000);
        let got = parse(&ours(&format!(
            "<v:maintenance>{long}\nnext line</v:maintenance>"
        )))
        .unwrap();
        let note = got.maintenance.unwrap();
        assert!(note.chars().count() <= MAX_NOTE + 1, "{}", note.len());
        assert!(!note.contains('\n'));
    }
}
