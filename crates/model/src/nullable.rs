//! A property that can be absent, explicitly `null`, or hold a value.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A Graph property in one of its three wire states.
///
/// Graph distinguishes a property that is not sent from one sent as `null`
/// (the seed's responses are full of `"subject": null`), and a faithful round
/// trip must keep the difference. Every optional property of the model is a
/// `Nullable<T>` declared with `#[serde(default, skip_serializing_if = "Nullable::is_absent")]`:
/// absent stays absent, `null` stays `null`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub enum Nullable<T> {
    /// The property is not in the document.
    #[default]
    Absent,
    /// The property is present with the value `null`.
    Null,
    /// The property is present with a value.
    Value(T),
}

impl<T> Nullable<T> {
    /// True when the property is not in the document (used by `skip_serializing_if`).
    pub fn is_absent(&self) -> bool {
        matches!(self, Nullable::Absent)
    }

    /// True when the property is present as `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, Nullable::Null)
    }

    /// True when the property holds a value.
    pub fn is_value(&self) -> bool {
        matches!(self, Nullable::Value(_))
    }

    /// The value, if there is one (absent and `null` both give `None`).
    pub fn value(&self) -> Option<&T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value, mutable, if there is one.
    pub fn value_mut(&mut self) -> Option<&mut T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value by move, if there is one.
    pub fn into_option(self) -> Option<T> {
        match self {
            Nullable::Value(v) => Some(v),
            _ => None,
        }
    }

    /// The value, inserting `f()` first when absent or `null`.
    pub fn get_or_insert_with(&mut self, f: impl FnOnce() -> T) -> &mut T {
        if !self.is_value() {
            *self = Nullable::Value(f());
        }
        match self {
            Nullable::Value(v) => v,
            // Just set to a value above.
            _ => unreachable!("Nullable set to Value above"),
        }
    }

    /// Maps the value, keeping absent and `null` as they are.
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Nullable<U> {
        match self {
            Nullable::Absent => Nullable::Absent,
            Nullable::Null => Nullable::Null,
            Nullable::Value(v) => Nullable::Value(f(v)),
        }
    }

    /// Borrows the value.
    pub fn as_ref(&self) -> Nullable<&T> {
        match self {
            Nullable::Absent => Nullable::Absent,
            Nullable::Null => Nullable::Null,
            Nullable::Value(v) => Nullable::Value(v),
        }
    }
}

impl<T> From<T> for Nullable<T> {
    fn from(value: T) -> Self {
        Nullable::Value(value)
    }
}

impl<T: Serialize> Serialize for Nullable<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            // `Absent` is normally skipped by `skip_serializing_if`; when a
            // container serializes it anyway (e.g. inside a Vec) `null` is the
            // only JSON that can stand in for it.
            Nullable::Absent | Nullable::Null => serializer.serialize_none(),
            Nullable::Value(v) => serializer.serialize_some(v),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Nullable<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Only called when the property is present (absent properties take
        // the `#[serde(default)]` path), so `None` here means an explicit null.
        Ok(match Option::<T>::deserialize(deserializer)? {
            None => Nullable::Null,
            Some(v) => Nullable::Value(v),
        })
    }
}

/// `deserialize_with` for a numeric property Graph may send as a number or as a string of
/// digits: Microsoft's v1.0 documentation itself shows `"resultInfo": {"code": "200"}` in
/// notifications. Either form is accepted (`null` stays `Null`); serializing always writes a
/// number. A string that is not a whole number in range is an error naming it.
pub fn lenient_number<'de, D, T>(deserializer: D) -> Result<Nullable<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Wire {
        Int(i64),
        Text(String),
    }
    let Some(wire) = Option::<Wire>::deserialize(deserializer)? else {
        return Ok(Nullable::Null);
    };
    let n = match wire {
        Wire::Int(n) => n,
        Wire::Text(text) => text.trim().parse::<i64>().map_err(|_| {
            serde::de::Error::custom(format!("expected a number, found the string {text:?}"))
        })?,
    };
    T::try_from(n)
        .map(Nullable::Value)
        .map_err(|_| serde::de::Error::custom(format!("the number {n} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Probe {
        #[serde(skip_serializing_if = "Nullable::is_absent")]
        a: Nullable<u32>,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Loose {
        #[serde(
            skip_serializing_if = "Nullable::is_absent",
            deserialize_with = "lenient_number"
        )]
        a: Nullable<u32>,
    }

    #[test]
    fn a_lenient_number_takes_numbers_and_numeric_strings_and_writes_numbers() {
        for (doc, expected) in [
            (json!({}), Nullable::Absent),
            (json!({"a": null}), Nullable::Null),
            (json!({"a": 7}), Nullable::Value(7)),
            (json!({"a": "7"}), Nullable::Value(7)),
            (json!({"a": " 200 "}), Nullable::Value(200)),
        ] {
            let probe: Loose = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(probe.a, expected, "{doc}");
        }
        let probe: Loose = serde_json::from_value(json!({"a": "7"})).unwrap();
        assert_eq!(serde_json::to_value(&probe).unwrap(), json!({"a": 7}));
        for bad in [
            json!({"a": "seven"}),
            json!({"a": -1}),
            json!({"a": "1e3"}),
            json!({"a": true}),
        ] {
            assert!(
                serde_json::from_value::<Loose>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn absent_null_and_value_stay_distinct() {
        for (doc, expected) in [
            (json!({}), Nullable::Absent),
            (json!({"a": null}), Nullable::Null),
            (json!({"a": 7}), Nullable::Value(7)),
        ] {
            let probe: Probe = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(probe.a, expected);
            assert_eq!(serde_json::to_value(&probe).unwrap(), doc);
        }
    }

    #[test]
    fn wrong_type_is_an_error() {
        assert!(serde_json::from_value::<Probe>(json!({"a": "seven"})).is_err());
    }
}
