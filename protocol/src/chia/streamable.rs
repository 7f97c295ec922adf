//! chia's "streamable" encoding: fields in declaration order, integers big-endian, `bool` one
//! byte (0 or 1), `Optional[T]` a flag byte (0 or 1) then the value, `list[T]`, `bytes` and
//! `str` a u32 count then the items (strings in UTF-8), tuples their members in order, fixed
//! sized byte strings (`bytes32`, `G1Element`, `G2Element`) their bytes.
//!
//! Decoding never trusts a count: a list's capacity is bounded by the bytes left, so a frame
//! of N bytes never allocates more than about N items.

use thiserror::Error;

/// Why bytes are not a valid value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The bytes end inside a value.
    #[error("truncated: {needed} more bytes needed at offset {at}")]
    Truncated {
        /// Offset where the value starts.
        at: usize,
        /// Bytes the value needs beyond the end.
        needed: usize,
    },
    /// A `bool` or `Optional` flag that is not 0 or 1.
    #[error("invalid flag byte {value} at offset {at}")]
    BadFlag {
        /// Offset of the byte.
        at: usize,
        /// The byte.
        value: u8,
    },
    /// A `str` that is not UTF-8.
    #[error("string at offset {at} is not UTF-8")]
    BadString {
        /// Offset of the string's bytes.
        at: usize,
    },
    /// Bytes left after the value.
    #[error("{0} trailing bytes after the value")]
    Trailing(usize),
    /// A value the message's definition does not allow.
    #[error("{0}")]
    Invalid(&'static str),
}

/// A cursor over bytes being decoded.
#[derive(Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.remaining() < n {
            return Err(ParseError::Truncated { at: self.pos, needed: n - self.remaining() });
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn flag(&mut self) -> Result<bool, ParseError> {
        let at = self.pos;
        match self.take(1)?[0] {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(ParseError::BadFlag { at, value }),
        }
    }
}

/// A value with a streamable encoding.
pub trait Streamable: Sized {
    /// Appends the encoding to `out`.
    fn stream(&self, out: &mut Vec<u8>);
    /// Decodes one value from `r`.
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError>;
}

/// The encoding of `value`.
pub fn to_bytes<T: Streamable>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.stream(&mut out);
    out
}

/// Decodes `bytes` as exactly one `T` (trailing bytes are an error).
pub fn from_bytes<T: Streamable>(bytes: &[u8]) -> Result<T, ParseError> {
    let mut r = Reader::new(bytes);
    let v = T::parse(&mut r)?;
    match r.remaining() {
        0 => Ok(v),
        n => Err(ParseError::Trailing(n)),
    }
}

macro_rules! int_streamable {
    ($($t:ty),*) => {$(
        impl Streamable for $t {
            fn stream(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
                let b = r.take(std::mem::size_of::<$t>())?;
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                Ok(<$t>::from_be_bytes(a))
            }
        }
    )*};
}
int_streamable!(u8, u16, u32, u64, i16);

impl Streamable for bool {
    fn stream(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        r.flag()
    }
}

impl<const N: usize> Streamable for [u8; N] {
    fn stream(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let mut a = [0u8; N];
        a.copy_from_slice(r.take(N)?);
        Ok(a)
    }
}

fn stream_len(len: usize, out: &mut Vec<u8>) {
    // Every value we send is far below 4 GiB (frames are limited to a few MiB).
    let len = u32::try_from(len).unwrap_or(u32::MAX);
    len.stream(out);
}

impl Streamable for String {
    fn stream(&self, out: &mut Vec<u8>) {
        stream_len(self.len(), out);
        out.extend_from_slice(self.as_bytes());
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let len = u32::parse(r)? as usize;
        let at = r.pos;
        let bytes = r.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| ParseError::BadString { at })
    }
}

/// `list[T]`; `Vec<u8>` is also chia's `bytes` (the same encoding).
impl<T: Streamable> Streamable for Vec<T> {
    fn stream(&self, out: &mut Vec<u8>) {
        stream_len(self.len(), out);
        for item in self {
            item.stream(out);
        }
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        let count = u32::parse(r)? as usize;
        // Every item takes at least one byte, except zero-sized ones, which no message has.
        let mut v = Vec::with_capacity(count.min(r.remaining()));
        for _ in 0..count {
            if r.remaining() == 0 {
                return Err(ParseError::Truncated { at: r.pos, needed: 1 });
            }
            v.push(T::parse(r)?);
        }
        Ok(v)
    }
}

impl<T: Streamable> Streamable for Option<T> {
    fn stream(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.stream(out);
            }
        }
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        if r.flag()? {
            Ok(Some(T::parse(r)?))
        } else {
            Ok(None)
        }
    }
}

impl<A: Streamable, B: Streamable> Streamable for (A, B) {
    fn stream(&self, out: &mut Vec<u8>) {
        self.0.stream(out);
        self.1.stream(out);
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        Ok((A::parse(r)?, B::parse(r)?))
    }
}

impl<A: Streamable, B: Streamable, C: Streamable> Streamable for (A, B, C) {
    fn stream(&self, out: &mut Vec<u8>) {
        self.0.stream(out);
        self.1.stream(out);
        self.2.stream(out);
    }
    fn parse(r: &mut Reader<'_>) -> Result<Self, ParseError> {
        Ok((A::parse(r)?, B::parse(r)?, C::parse(r)?))
    }
}

/// Declares a struct whose encoding is its fields in order (chia's `@streamable` dataclass).
#[macro_export]
#[doc(hidden)]
macro_rules! streamable_struct {
    ($(#[$m:meta])* pub struct $name:ident { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name { $($(#[$fm])* pub $f: $t),* }

        impl $crate::chia::streamable::Streamable for $name {
            fn stream(&self, _out: &mut Vec<u8>) {
                $($crate::chia::streamable::Streamable::stream(&self.$f, _out);)*
            }
            fn parse(
                _r: &mut $crate::chia::streamable::Reader<'_>,
            ) -> Result<Self, $crate::chia::streamable::ParseError> {
                Ok($name { $($f: <$t as $crate::chia::streamable::Streamable>::parse(_r)?),* })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_big_endian_and_round_trip() {
        assert_eq!(to_bytes(&0x0102u16), [1, 2]);
        assert_eq!(to_bytes(&-2i16), [0xff, 0xfe]);
        assert_eq!(from_bytes::<u64>(&to_bytes(&(u64::MAX - 5))).unwrap(), u64::MAX - 5);
        assert!(matches!(from_bytes::<u32>(&[1, 2, 3]), Err(ParseError::Truncated { .. })));
    }

    #[test]
    fn options_lists_and_strings() {
        let v: Vec<Option<String>> = vec![None, Some("hé".into())];
        let b = to_bytes(&v);
        assert_eq!(b, [0, 0, 0, 2, 0, 1, 0, 0, 0, 3, b'h', 0xc3, 0xa9]);
        assert_eq!(from_bytes::<Vec<Option<String>>>(&b).unwrap(), v);
        assert!(matches!(
            from_bytes::<Option<u8>>(&[2, 0]),
            Err(ParseError::BadFlag { at: 0, value: 2 })
        ));
        assert!(matches!(
            from_bytes::<String>(&[0, 0, 0, 1, 0xff]),
            Err(ParseError::BadString { at: 4 })
        ));
        assert!(matches!(from_bytes::<bool>(&[1, 0]), Err(ParseError::Trailing(1))));
    }

    #[test]
    fn a_huge_count_allocates_nothing_and_fails() {
        let b = [0xff, 0xff, 0xff, 0xff, 7];
        assert!(matches!(from_bytes::<Vec<u64>>(&b), Err(ParseError::Truncated { .. })));
        assert!(matches!(from_bytes::<Vec<u8>>(&b), Err(ParseError::Truncated { .. })));
    }
}
