//! Just enough HPACK (RFC 7541) for a raw HTTP/2 client: an encoder that writes every field
//! as a literal (so a test can send names and values a conforming encoder refuses), the two
//! representations an HPACK-bomb needs, and a complete decoder (static and dynamic table,
//! Huffman) for the server's responses.

use std::collections::HashMap;

/// A literal field without indexing, with a new name, neither side Huffman-coded
/// (RFC 7541 §6.2.2). Any bytes go: upper-case names, CR/LF, NUL, pseudo-headers anywhere.
pub fn literal(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x00];
    string(&mut out, name);
    string(&mut out, value);
    out
}

/// A literal field *with* incremental indexing (§6.2.1): the server's decoder adds it to its
/// dynamic table, where [`indexed`] can refer to it (at index 62 when it is the newest).
pub fn literal_indexed(name: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = vec![0x40];
    string(&mut out, name);
    string(&mut out, value);
    out
}

/// An indexed field (§6.1): one byte or a few, however long the entry it names.
pub fn indexed(index: usize) -> Vec<u8> {
    let mut out = Vec::new();
    integer(&mut out, index, 7, 0x80);
    out
}

/// A header block of literals, in the order given.
pub fn block(fields: &[(&str, &str)]) -> Vec<u8> {
    fields
        .iter()
        .flat_map(|(n, v)| literal(n.as_bytes(), v.as_bytes()))
        .collect()
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, s.len(), 7, 0x00);
    out.extend_from_slice(s);
}

fn integer(out: &mut Vec<u8>, mut value: usize, prefix: u8, flags: u8) {
    let max = (1usize << prefix) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 128 {
        out.push((value % 128 + 128) as u8);
        value /= 128;
    }
    out.push(value as u8);
}

/// The HPACK decoder state of one connection.
#[derive(Default)]
pub struct Decoder {
    dynamic: Vec<(Vec<u8>, Vec<u8>)>,
    size: usize,
    max: usize,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            dynamic: Vec::new(),
            size: 0,
            max: 4096,
        }
    }

    /// Decodes one complete header block into (name, value) pairs.
    pub fn decode(&mut self, mut src: &[u8]) -> Result<Vec<(String, String)>, String> {
        let mut out = Vec::new();
        while let Some(&first) = src.first() {
            if first & 0x80 != 0 {
                let index = read_integer(&mut src, 7)?;
                let (n, v) = self.entry(index)?;
                out.push((n, v));
            } else if first & 0xE0 == 0x20 {
                self.max = read_integer(&mut src, 5)?;
                self.evict();
            } else {
                let (prefix, index_it) = if first & 0xC0 == 0x40 {
                    (6, true)
                } else {
                    (4, false)
                };
                let name_index = read_integer(&mut src, prefix)?;
                let name = if name_index == 0 {
                    read_string(&mut src)?
                } else {
                    self.entry(name_index)?.0.into_bytes()
                };
                let value = read_string(&mut src)?;
                if index_it {
                    self.insert(name.clone(), value.clone());
                }
                out.push((
                    String::from_utf8_lossy(&name).into_owned(),
                    String::from_utf8_lossy(&value).into_owned(),
                ));
            }
        }
        Ok(out)
    }

    fn entry(&self, index: usize) -> Result<(String, String), String> {
        if index == 0 {
            return Err("index 0".into());
        }
        if index <= STATIC.len() {
            let (n, v) = STATIC[index - 1];
            return Ok((n.to_string(), v.to_string()));
        }
        let (n, v) = self
            .dynamic
            .get(index - STATIC.len() - 1)
            .ok_or_else(|| format!("no dynamic entry {index}"))?;
        Ok((
            String::from_utf8_lossy(n).into_owned(),
            String::from_utf8_lossy(v).into_owned(),
        ))
    }

    fn insert(&mut self, name: Vec<u8>, value: Vec<u8>) {
        self.size += name.len() + value.len() + 32;
        self.dynamic.insert(0, (name, value));
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max {
            match self.dynamic.pop() {
                Some((n, v)) => self.size -= n.len() + v.len() + 32,
                None => break,
            }
        }
    }
}

fn read_integer(src: &mut &[u8], prefix: u8) -> Result<usize, String> {
    let max = (1usize << prefix) - 1;
    let (&first, rest) = src.split_first().ok_or("truncated integer")?;
    *src = rest;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0;
    loop {
        let (&b, rest) = src.split_first().ok_or("truncated integer")?;
        *src = rest;
        value += usize::from(b & 0x7F) << shift;
        shift += 7;
        if b & 0x80 == 0 || shift > 28 {
            return Ok(value);
        }
    }
}

fn read_string(src: &mut &[u8]) -> Result<Vec<u8>, String> {
    let huffman = src.first().is_some_and(|b| b & 0x80 != 0);
    let len = read_integer(src, 7)?;
    if src.len() < len {
        return Err("truncated string".into());
    }
    let (raw, rest) = src.split_at(len);
    *src = rest;
    if huffman {
        huffman_decode(raw)
    } else {
        Ok(raw.to_vec())
    }
}

/// Decodes the canonical Huffman code of RFC 7541 Appendix B, built from its code lengths.
fn huffman_decode(src: &[u8]) -> Result<Vec<u8>, String> {
    let codes = huffman_codes();
    let mut out = Vec::new();
    let (mut code, mut len) = (0u32, 0u8);
    for byte in src {
        for bit in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> bit) & 1);
            len += 1;
            if let Some(&sym) = codes.get(&(len, code)) {
                if sym == 256 {
                    return Err("EOS in a Huffman string".into());
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            } else if len > 30 {
                return Err("invalid Huffman code".into());
            }
        }
    }
    // At most 7 bits of padding, all ones.
    if len > 7 || code != (1u32 << len) - 1 {
        return Err("invalid Huffman padding".into());
    }
    Ok(out)
}

fn huffman_codes() -> HashMap<(u8, u32), u16> {
    let mut symbols: Vec<(u8, u16)> = LENGTHS
        .iter()
        .enumerate()
        .map(|(sym, &len)| (len, sym as u16))
        .chain(std::iter::once((30, 256)))
        .collect();
    symbols.sort();
    let mut map = HashMap::new();
    let (mut code, mut prev) = (0u32, symbols[0].0);
    for (len, sym) in symbols {
        code <<= len - prev;
        prev = len;
        map.insert((len, code), sym);
        code += 1;
    }
    map
}

/// Huffman code lengths of the 256 byte values (RFC 7541 Appendix B; EOS is 30 bits).
const LENGTHS: [u8; 256] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
];

/// The static table (RFC 7541 Appendix A).
const STATIC: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];
