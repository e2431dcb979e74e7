//! Input framing. Binary targets read a sequence of `[tag u8][length u16 big-endian][payload]`
//! records (a truncated last record keeps what is left, so every input means something); text
//! targets read NUL-separated operations whose first character says what they are.

/// Iterator over the records of a fuzz input.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    rest: &'a [u8],
}

impl<'a> Records<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Records { rest: data }
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = (u8, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (&tag, rest) = self.rest.split_first()?;
        let [hi, lo, rest @ ..] = rest else {
            self.rest = &[];
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*hi, *lo])).min(rest.len());
        let (payload, rest) = rest.split_at(len);
        self.rest = rest;
        Some((tag, payload))
    }
}

/// Appends one record (seed writers). Payloads longer than 65535 bytes are cut.
pub fn push_record(out: &mut Vec<u8>, tag: u8, payload: &[u8]) {
    let payload = &payload[..payload.len().min(usize::from(u16::MAX))];
    out.push(tag);
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

/// NUL-separated operations of a text input: `(first char, rest)`; empty operations are skipped.
pub fn text_ops(text: &str) -> impl Iterator<Item = (char, &str)> {
    text.split('\0').filter_map(|op| {
        let mut chars = op.chars();
        let c = chars.next()?;
        Some((c, chars.as_str()))
    })
}

/// Joins text operations into one input (seed writers).
pub fn join_text_ops<S: AsRef<str>>(ops: impl IntoIterator<Item = (char, S)>) -> String {
    ops.into_iter()
        .map(|(c, s)| format!("{c}{}", s.as_ref()))
        .collect::<Vec<_>>()
        .join("\0")
}
