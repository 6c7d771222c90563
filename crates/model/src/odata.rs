//! `@odata.type`-selected unions.

use serde::Serialize;

/// The annotation that names a resource's type, e.g. `#microsoft.graph.call`.
pub const ODATA_TYPE: &str = "@odata.type";

/// Serializes `inner` with the `@odata.type` annotation written first, the way Graph does.
#[derive(Serialize)]
pub(crate) struct Tagged<'a, T: Serialize> {
    #[serde(rename = "@odata.type")]
    pub(crate) odata_type: &'a str,
    #[serde(flatten)]
    pub(crate) inner: &'a T,
}

/// Declares an enum whose variant is chosen by the object's `@odata.type`.
///
/// Variant structs do not hold the annotation: the enum writes it on the way out
/// and removes it on the way in. An object with another `@odata.type`, or none,
/// becomes `Other` and is written back unchanged, so a derived type Graph adds
/// later survives the round trip.
macro_rules! odata_union {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident($ty:ty) = $tag:literal ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        // Variants are a few hundred bytes at most and live one per call; boxing
        // them would only make matching and building clumsier.
        #[allow(clippy::large_enum_variant)]
        #[derive(Clone, Debug, PartialEq)]
        pub enum $name {
            $( $(#[$vmeta])* $variant($ty), )*
            /// Any other `@odata.type` (or none), kept verbatim.
            Other(serde_json::Map<String, serde_json::Value>),
        }

        impl $name {
            /// The `@odata.type` this value is written with.
            pub fn odata_type(&self) -> Option<&str> {
                match self {
                    $( Self::$variant(_) => Some($tag), )*
                    Self::Other(map) => map
                        .get($crate::odata::ODATA_TYPE)
                        .and_then(serde_json::Value::as_str),
                }
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                match self {
                    $( Self::$variant(inner) => $crate::odata::Tagged { odata_type: $tag, inner }
                        .serialize(serializer), )*
                    Self::Other(map) => map.serialize(serializer),
                }
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::Error as _;
                let mut map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
                let tag = map
                    .get($crate::odata::ODATA_TYPE)
                    .and_then(serde_json::Value::as_str)
                    .map(str::to_owned);
                match tag.as_deref() {
                    $( Some($tag) => {
                        map.remove($crate::odata::ODATA_TYPE);
                        serde_json::from_value(serde_json::Value::Object(map))
                            .map(Self::$variant)
                            .map_err(|e| D::Error::custom(format_args!("{}: {e}", $tag)))
                    } )*
                    _ => Ok(Self::Other(map)),
                }
            }
        }
    };
}
