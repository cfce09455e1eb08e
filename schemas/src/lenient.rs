//! Deserializers that never fail on a value of the wrong JSON type.
//!
//! GuardDuty's JSON varies between findings and over time (severity int or float, dates as
//! ISO strings or epoch floats, `action: {}`, arrays where one object was expected, nulls).
//! Every leaf here accepts any JSON value and keeps what it can use; what it cannot use
//! becomes `None`. The original text is stored whole in the `finding` column, so nothing is
//! lost by reading leniently. Strings borrow from the input whenever JSON escaping allows:
//! a plain `Option<Cow<str>>` would allocate every time (PROTOTYPE.md).

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::time::{epoch_number_to_ms, parse_timestamp_ms};

fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Implements the visitor methods that turn a JSON value of no use into `None`.
macro_rules! ignore_rest {
    (seq, map) => {
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            drain_seq(seq).map(|()| None)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            drain_map(map).map(|()| None)
        }
    };
    (unit) => {
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
    };
}

/// Text; numbers and booleans are kept as their JSON spelling.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Text<'a>(pub Option<Cow<'a, str>>);

impl<'a> Text<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Option<Cow<'a, str>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(if v { "true" } else { "false" })))
            }
            ignore_rest!(unit);
            ignore_rest!(seq, map);
        }
        d.deserialize_any(V(PhantomData)).map(Text)
    }
}

/// Text that must be a JSON string: identity fields (`id`, `type`) are never coerced.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct StrictText<'a>(pub Option<Cow<'a, str>>);

impl<'a> StrictText<'a> {
    pub fn get(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for StrictText<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Option<Cow<'a, str>>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Some(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            ignore_rest!(unit);
            ignore_rest!(seq, map);
        }
        d.deserialize_any(V(PhantomData)).map(StrictText)
    }
}

/// A number: JSON int, float, or a string holding one.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Number(pub Option<f64>);

impl<'de> Deserialize<'de> for Number {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<f64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number")
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(v.trim().parse::<f64>().ok().filter(|n| n.is_finite()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            ignore_rest!(unit);
            ignore_rest!(seq, map);
        }
        d.deserialize_any(V).map(Number)
    }
}

/// A whole number: JSON int, a float with no fraction, or a string holding one.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Integer(pub Option<i64>);

impl<'de> Deserialize<'de> for Integer {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let Number(n) = Number::deserialize(d)?;
        Ok(Integer(
            n.filter(|v| v.fract() == 0.0 && v.abs() < 9.0e15)
                .map(|v| v as i64),
        ))
    }
}

/// A boolean: JSON `true`/`false` or the strings `"true"`/`"false"`.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Flag(pub Option<bool>);

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<bool>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a boolean")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Some(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(match v.trim() {
                    s if s.eq_ignore_ascii_case("true") => Some(true),
                    s if s.eq_ignore_ascii_case("false") => Some(false),
                    _ => None,
                })
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(None)
            }
            ignore_rest!(unit);
            ignore_rest!(seq, map);
        }
        d.deserialize_any(V).map(Flag)
    }
}

/// A point in time as epoch milliseconds: an ISO-8601 string or epoch seconds.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Instant(pub Option<i64>);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Option<i64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a date-time")
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(parse_timestamp_ms(v)
                    .or_else(|| v.trim().parse::<f64>().ok().and_then(epoch_number_to_ms)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(epoch_number_to_ms(v as f64))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(epoch_number_to_ms(v as f64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(epoch_number_to_ms(v))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            ignore_rest!(unit);
            ignore_rest!(seq, map);
        }
        d.deserialize_any(V).map(Instant)
    }
}

/// An object read as `T`; anything else is `None`. An array is read as its first object,
/// since some producers wrap single objects in arrays.
#[derive(Debug, Clone, PartialEq)]
pub struct Object<T>(pub Option<T>);

impl<T> Default for Object<T> {
    fn default() -> Self {
        Object(None)
    }
}

impl<T> Object<T> {
    pub fn get(&self) -> Option<&T> {
        self.0.as_ref()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjectVisitor(PhantomData)).map(Object)
    }
}

struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = Option<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map)).map(Some)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let first = seq.next_element::<Object<T>>()?.and_then(|o| o.0);
        drain_seq(seq)?;
        Ok(first)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    ignore_rest!(unit);
}

/// An array of objects read as `T`s; a lone object counts as an array of one; elements that
/// are not objects are skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct Objects<T>(pub Vec<T>);

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Objects<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = Vec<T>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an array of objects")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Object<T>>()? {
                    out.extend(item.0);
                }
                Ok(out)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(|t| vec![t])
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Vec::new())
            }
        }
        d.deserialize_any(V(PhantomData)).map(Objects)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Deserialize, Default, Debug)]
    #[serde(default, rename_all = "camelCase")]
    struct Probe<'a> {
        #[serde(borrow)]
        name: Text<'a>,
        severity: Number,
        count: Integer,
        archived: Flag,
        at: Instant,
        #[serde(borrow)]
        inner: Object<Inner<'a>>,
        #[serde(borrow)]
        many: Objects<Inner<'a>>,
    }

    #[derive(Deserialize, Default, Debug, PartialEq)]
    #[serde(default)]
    struct Inner<'a> {
        #[serde(borrow)]
        name: Text<'a>,
    }

    fn probe(json: &str) -> Probe<'_> {
        serde_json::from_str(json).expect("lenient parse never fails on types")
    }

    #[test]
    fn plain_strings_borrow_from_the_input() {
        let p = probe(r#"{"name":"plain"}"#);
        assert!(matches!(p.name.0, Some(Cow::Borrowed("plain"))));
        let p = probe(r#"{"name":"esc\"aped"}"#);
        assert_eq!(p.name.get(), Some("esc\"aped"));
    }

    #[test]
    fn wrong_types_become_none_or_are_coerced() {
        let p = probe(
            r#"{"name":123,"severity":"5.5","count":"7","archived":"true","at":1668677599.224,
                "inner":[{"name":"first"},{"name":"second"}],"many":{"name":"lone"}}"#,
        );
        assert_eq!(p.name.get(), Some("123"));
        assert_eq!(p.severity.0, Some(5.5));
        assert_eq!(p.count.0, Some(7));
        assert_eq!(p.archived.0, Some(true));
        assert_eq!(p.at.0, Some(1_668_677_599_224));
        assert_eq!(p.inner.get().and_then(|i| i.name.get()), Some("first"));
        assert_eq!(p.many.0.len(), 1);

        let p = probe(
            r#"{"name":{"a":[1,2]},"severity":null,"count":1.5,"archived":1,"at":"soon","inner":"x","many":[1,{"name":"b"},null]}"#,
        );
        assert_eq!(p.name.get(), None);
        assert_eq!(p.severity.0, None);
        assert_eq!(p.count.0, None);
        assert_eq!(p.archived.0, None);
        assert_eq!(p.at.0, None);
        assert!(p.inner.get().is_none());
        assert_eq!(p.many.0.len(), 1);
    }
}
