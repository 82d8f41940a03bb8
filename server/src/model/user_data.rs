//! User data as the read model keeps it: compressed against a dictionary made of other
//! instances' user data (zstd's "raw content" dictionary). A fleet's user data is mostly the
//! same template with a few names changed, so a 600-byte `#cloud-config` keeps ~50 bytes; a
//! million instances' user data fits in tens of MiB instead of most of the memory budget.
//! The dictionary also carries entropy tables made from those samples, so a frame reuses
//! them instead of building its own (building them was most of a small frame's cost, and of
//! a million-instance start-up).

use std::cell::RefCell;
use std::sync::Arc;

use zstd::zstd_safe::{self, CCtx, CDict, DCtx, DDict};

/// Bytes of user data gathered into a dictionary (the newest samples first out).
pub const DICTIONARY_BYTES: usize = 16 * 1024;
/// User data shorter than this is kept as it is: a frame header would eat the gain.
pub const MIN_COMPRESSED_BYTES: usize = 64;
/// zstd level for user data: small inputs compress about as fast at 3 as at 1, and smaller.
pub const LEVEL: i32 = 3;
/// The dictionary's id as frames carry it: one byte (ids under 256 take one), where zstd's
/// own pick would take four per instance. The dictionary never leaves this process, so the
/// ids the format reserves for public dictionaries clash with nothing.
const DICTIONARY_ID: u32 = 1;
/// Room for the entropy tables in front of the dictionary's content.
const DICTIONARY_HEADER_BYTES: usize = 1024;

/// The first byte of kept user data: how the rest is stored.
const RAW: u8 = 0;
const ZSTD: u8 = 1;

/// A dictionary, digested for compressing and for decompressing.
pub struct Codec {
    compress: CDict<'static>,
    decompress: DDict<'static>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

impl Codec {
    /// A dictionary from samples of user data (at most [`DICTIONARY_BYTES`] of them: a sample
    /// that does not fit in what is left is passed over, and the next ones tried); `None`
    /// when there are too few to be worth one.
    pub fn from_samples<'a>(samples: impl IntoIterator<Item = &'a [u8]>) -> Option<Self> {
        let mut content = Vec::with_capacity(DICTIONARY_BYTES);
        let mut sizes = Vec::new();
        for sample in samples {
            if content.len() + sample.len() > DICTIONARY_BYTES {
                continue;
            }
            content.extend_from_slice(sample);
            sizes.push(sample.len());
        }
        if content.len() < MIN_COMPRESSED_BYTES {
            return None;
        }
        // Without tables (too few or too alike samples) the content alone still works.
        let dictionary = with_entropy_tables(&content, &sizes).unwrap_or(content);
        Some(Self {
            compress: CDict::create(&dictionary, LEVEL),
            decompress: DDict::create(&dictionary),
        })
    }
}

/// `content` made a full zstd dictionary: entropy tables from the samples (`content` is
/// the samples, each `sizes` long, one after the other) in front of it; `None` when zstd
/// cannot make tables from them.
fn with_entropy_tables(content: &[u8], sizes: &[usize]) -> Option<Vec<u8>> {
    use zstd_safe::zstd_sys::{ZDICT_finalizeDictionary, ZDICT_isError, ZDICT_params_t};
    let capacity = content.len() + DICTIONARY_HEADER_BYTES;
    let mut dictionary = vec![0u8; capacity];
    let parameters = ZDICT_params_t {
        compressionLevel: LEVEL,
        notificationLevel: 0,
        dictID: DICTIONARY_ID,
    };
    // SAFETY: every pointer comes from a live slice with its length passed alongside
    // (`dictionary` writable for `capacity` bytes, `sizes` summing to `content.len()`); zstd
    // reads and writes only within them and keeps none of them after returning.
    let written = unsafe {
        ZDICT_finalizeDictionary(
            dictionary.as_mut_ptr().cast(),
            capacity,
            content.as_ptr().cast(),
            content.len(),
            content.as_ptr().cast(),
            sizes.as_ptr(),
            u32::try_from(sizes.len()).ok()?,
            parameters,
        )
    };
    // SAFETY: a plain function of the returned code.
    if unsafe { ZDICT_isError(written) } != 0 || written > capacity {
        return None;
    }
    dictionary.truncate(written);
    Some(dictionary)
}

/// Packs user data with one compression context (one per loader or batch: a context is
/// costly to make).
pub struct Packer {
    codec: Option<Arc<Codec>>,
    context: CCtx<'static>,
}

impl Packer {
    pub fn new(codec: Option<Arc<Codec>>) -> Self {
        Self {
            codec,
            context: CCtx::create(),
        }
    }

    /// `data` as kept: compressed when that is smaller, else as it is.
    pub fn pack(&mut self, data: &[u8]) -> Box<[u8]> {
        if let Some(codec) = &self.codec
            && data.len() >= MIN_COMPRESSED_BYTES
        {
            // zstd writes from the start of the buffer: the tag goes in front afterwards.
            let mut frame = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
            let compressed = self
                .context
                .compress_using_cdict(&mut frame, data, &codec.compress);
            if compressed.is_ok() && frame.len() < data.len() {
                let mut out = Vec::with_capacity(frame.len() + 1);
                out.push(ZSTD);
                out.extend_from_slice(&frame);
                return out.into_boxed_slice();
            }
        }
        let mut out = Vec::with_capacity(data.len() + 1);
        out.push(RAW);
        out.extend_from_slice(data);
        out.into_boxed_slice()
    }
}

thread_local! {
    /// One decompression context per thread, kept (zstd's is ~100 KiB: not per request).
    static CONTEXT: RefCell<DCtx<'static>> = RefCell::new(DCtx::create());
}

/// The user data `packed` holds; `None` when it is not something [`Packer::pack`] made with
/// `codec` (a bug, logged by the caller).
pub fn unpack(packed: &[u8], codec: Option<&Codec>) -> Option<Vec<u8>> {
    let (&tag, rest) = packed.split_first()?;
    match tag {
        RAW => Some(rest.to_vec()),
        ZSTD => {
            let codec = codec?;
            let size = zstd_safe::get_frame_content_size(rest).ok()??;
            let mut out = Vec::with_capacity(usize::try_from(size).ok()?);
            CONTEXT
                .with(|context| {
                    context
                        .borrow_mut()
                        .decompress_using_ddict(&mut out, rest, &codec.decompress)
                })
                .ok()?;
            Some(out)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(name: &str) -> Vec<u8> {
        format!(
            "#cloud-config\nhostname: {name}\nfqdn: {name}.example.org\nmanage_etc_hosts: true\n\
             ssh_pwauth: true\nwrite_files:\n  - path: /etc/app.conf\n    content: |\n      \
             listen=0.0.0.0:8080\n      workers=2\n    permissions: '0640'\n"
        )
        .into_bytes()
    }

    #[test]
    fn a_fleet_of_one_template_compresses_tenfold_and_round_trips() {
        let samples: Vec<Vec<u8>> = (0..32).map(|i| template(&format!("web-{i}"))).collect();
        let codec = Arc::new(Codec::from_samples(samples.iter().map(Vec::as_slice)).unwrap());
        let mut packer = Packer::new(Some(codec.clone()));
        let data = template("db-123456");
        let packed = packer.pack(&data);
        assert!(
            packed.len() * 5 < data.len(),
            "{} of {}",
            packed.len(),
            data.len()
        );
        assert_eq!(unpack(&packed, Some(&codec)).unwrap(), data);
        // The dictionary is a full one (with entropy tables) whose id takes one byte per frame.
        assert_eq!(
            codec.compress.get_dict_id().map(u32::from),
            Some(DICTIONARY_ID)
        );
        assert_eq!(
            zstd_safe::get_dict_id_from_frame(&packed[1..]).map(u32::from),
            Some(DICTIONARY_ID)
        );
        // Short or incompressible data is kept as it is, and round-trips too.
        for data in [b"#!/bin/sh\n".to_vec(), (0..=255u8).collect::<Vec<_>>()] {
            let packed = packer.pack(&data);
            assert_eq!(packed[0], RAW);
            assert_eq!(unpack(&packed, Some(&codec)).unwrap(), data);
        }
        // Without a dictionary everything is kept as it is.
        let packed = Packer::new(None).pack(&data);
        assert_eq!(unpack(&packed, None).unwrap(), data);
        // A compressed frame without its dictionary, or a bad tag: refused, not garbage.
        assert!(unpack(&packer.pack(&data), None).is_none());
        assert!(unpack(&[7, 1, 2], Some(&codec)).is_none());
        assert!(Codec::from_samples([&b"tiny"[..]]).is_none());
    }

    #[test]
    fn a_sample_larger_than_the_dictionary_is_left_out_not_the_end_of_it() {
        let large = vec![b'#'; DICTIONARY_BYTES + 1];
        let samples: Vec<Vec<u8>> = std::iter::once(large)
            .chain((0..16).map(|i| template(&format!("web-{i}"))))
            .collect();
        let codec = Codec::from_samples(samples.iter().map(Vec::as_slice))
            .expect("a dictionary from the samples that fit");
        let data = template("db-1");
        let packed = Packer::new(Some(Arc::new(codec))).pack(&data);
        assert_eq!(packed[0], ZSTD);
    }
}
