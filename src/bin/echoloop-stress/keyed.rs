//! Arrays with one value per member of an enum (a connect failure reason,
//! a latency series), sized by the enum's `ALL` and written in JSON as an
//! object keyed by the members' report names: `{"refused": 3, "timeout":
//! 0, …}`. Adding a member to the enum adds it to every such array, its
//! JSON and its sums, with no other edit.

/// Declares `$Name<T>`: one `T` per member of `$Key` (which has `ALL` and
/// `index()`), serialized as an object whose keys are `$Key::$key_name()`.
/// It derefs to the array, so `counts.failed[reason.index()] += 1` works.
/// A key missing from the JSON reads as `T` from `null` (so `None` for an
/// `Option`, an error for a count); unknown keys are ignored, as serde does
/// for structs.
macro_rules! keyed_array {
    ($(#[$attr:meta])* $Name:ident, $Key:ty, $key_name:ident) => {
        $(#[$attr])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $Name<T>(pub [T; <$Key>::ALL.len()]);

        impl<T: Default> Default for $Name<T> {
            fn default() -> Self {
                $Name(std::array::from_fn(|_| T::default()))
            }
        }

        impl<T> std::ops::Deref for $Name<T> {
            type Target = [T; <$Key>::ALL.len()];
            fn deref(&self) -> &Self::Target {
                &self.0
            }
        }

        impl<T> std::ops::DerefMut for $Name<T> {
            fn deref_mut(&mut self) -> &mut Self::Target {
                &mut self.0
            }
        }

        impl<T> $Name<T> {
            /// The value of `key`.
            #[allow(dead_code)]
            pub fn of(&self, key: $Key) -> &T {
                &self.0[key.index()]
            }

            /// Each member with its value, in `ALL` order.
            #[allow(dead_code)]
            pub fn keyed(&self) -> impl Iterator<Item = ($Key, &T)> {
                <$Key>::ALL.into_iter().zip(self.0.iter())
            }
        }

        impl<T: serde::Serialize> serde::Serialize for $Name<T> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeMap as _;
                let mut map = serializer.serialize_map(Some(self.0.len()))?;
                for (key, value) in self.keyed() {
                    map.serialize_entry(key.$key_name(), value)?;
                }
                map.end()
            }
        }

        impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for $Name<T> {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                use serde::de::{Error as _, IntoDeserializer as _};
                let mut map =
                    std::collections::BTreeMap::<String, T>::deserialize(deserializer)?;
                let mut values = Vec::with_capacity(<$Key>::ALL.len());
                for key in <$Key>::ALL {
                    let name = key.$key_name();
                    values.push(match map.remove(name) {
                        Some(value) => value,
                        None => T::deserialize(().into_deserializer())
                            .map_err(|_: serde::de::value::Error| D::Error::missing_field(name))?,
                    });
                }
                values
                    .try_into()
                    .map($Name)
                    .map_err(|_| D::Error::custom("not one value per member"))
            }
        }
    };
}

pub(crate) use keyed_array;
