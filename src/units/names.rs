//! Matching typed unit names: "xa tan loi", "TT. Tân Phú", "Xã Tân Lợi" all fold to a type
//! word and a proper name. The type word is not dropped blindly: "Phường Tân Lợi" names a
//! phường, and a xã of the same name is a different place, so a type the text states must
//! agree with the type of the name it matches (the alias's own type word, else the unit's).

use super::{AdminUnit, UnitType};
use crate::vi_text::fold;

/// Leading words (folded) that say a unit's type, longest first.
const TYPE_WORDS: &[(&str, UnitType)] = &[
    ("thi tran ", UnitType::ThiTran),
    ("dac khu ", UnitType::DacKhu),
    ("phuong ", UnitType::Phuong),
    ("xa ", UnitType::Xa),
    ("tt ", UnitType::ThiTran),
    ("p ", UnitType::Phuong),
];

/// A name folded and split into the type it states (if any) and the proper name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NameKey {
    pub unit_type: Option<UnitType>,
    pub proper: String,
}

impl NameKey {
    pub fn of(text: &str) -> Self {
        let folded = fold(text);
        for (word, unit_type) in TYPE_WORDS {
            // Only with something after it: a commune could be named "Xa" alone.
            if let Some(rest) = folded.strip_prefix(word).filter(|r| !r.is_empty()) {
                return NameKey {
                    unit_type: Some(*unit_type),
                    proper: rest.to_string(),
                };
            }
        }
        NameKey {
            unit_type: None,
            proper: folded,
        }
    }

    /// `self` is a unit's name, `typed` what someone wrote.
    fn accepts(&self, typed: &NameKey) -> bool {
        self.proper == typed.proper
            && match (self.unit_type, typed.unit_type) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            }
    }
}

/// The keys of a unit: each of its names, a name without a type word taking the unit's type.
pub(super) fn keys_of<'a>(
    names: impl IntoIterator<Item = &'a str>,
    unit_type: Option<UnitType>,
) -> Vec<NameKey> {
    let mut keys: Vec<NameKey> = Vec::new();
    for name in names {
        let mut key = NameKey::of(name);
        if key.unit_type.is_none() {
            key.unit_type = unit_type;
        }
        if !key.proper.is_empty() && !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// What a typed name matched among the units of one day.
#[derive(Debug)]
pub enum NameMatch<'a> {
    None,
    One(&'a AdminUnit),
    /// Several units fit (the text gave no type and two types share the name): no guess.
    Many(Vec<&'a AdminUnit>),
}

pub(super) fn find<'a>(units: impl Iterator<Item = &'a AdminUnit>, text: &str) -> NameMatch<'a> {
    let typed = NameKey::of(text);
    if typed.proper.is_empty() {
        return NameMatch::None;
    }
    let mut found: Vec<&AdminUnit> = units
        .filter(|u| u.keys.iter().any(|k| k.accepts(&typed)))
        .collect();
    match found.len() {
        0 => NameMatch::None,
        1 => NameMatch::One(found.remove(0)),
        _ => NameMatch::Many(found),
    }
}
