//! User-data decoding as the guest agent does it: gzip (bounded), MIME multipart, first-line
//! typing, then every `#cloud-config` part merged and read into the typed configuration.
//! Any input must decode without a panic, and stay within the decoder's bounds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use metaboot::userdata::cloud_config::CloudConfig;
use metaboot::userdata::include::NoFetch;
use metaboot::userdata::{self, MAX_PARTS, yaml};

fuzz_target!(|data: &[u8]| {
    let decoded = userdata::decode(data, None, &NoFetch);
    let parts = decoded.configs.len() + decoded.script_count();
    assert!(parts <= MAX_PARTS, "{parts} parts");
    for script in decoded
        .scripts
        .iter()
        .chain(decoded.per_frequency.iter().map(|(_, script)| script))
        .chain(&decoded.boothooks)
    {
        // Script names become file names under the instance directory.
        assert!(
            !script.name.is_empty() && !script.name.contains('/') && script.name != "..",
            "unsafe script name {:?}",
            script.name
        );
    }
    let mut merged = yaml::ConfigMap::new();
    for config in decoded.configs {
        yaml::merge(&mut merged, config);
    }
    let _ = CloudConfig::from_map(&merged);
    // Vendor data takes JSON around the same decoder.
    let _ = userdata::decode_vendor(data, "vendor_data.json", &NoFetch);
});
