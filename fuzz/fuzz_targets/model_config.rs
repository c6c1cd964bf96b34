//! A model's config.json and a pipeline's `model_config`: a config whose derived facts are
//! all usable (finite, positive, one entry per layer), or a problem naming a field, never a
//! panic or an allocation the input did not pay for.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use t2s::model_config::{model_config_problems, Config};

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Value::Object(user) = &v {
        for p in model_config_problems(user) {
            assert!(!p.message.is_empty(), "a problem without a message: {p:?}");
        }
    }
    let Ok(cfg) = Config::from_value(v) else {
        return;
    };
    let Ok(r) = cfg.check() else {
        return;
    };
    assert_eq!(r.sliding.len() as i64, cfg.num_hidden_layers);
    assert!(
        r.scaling.is_finite() && r.scaling > 0.0,
        "scaling {}",
        r.scaling
    );
    for rope in [r.rope_local, r.rope_global] {
        assert!(rope.theta.is_finite() && rope.theta > 0.0, "{rope:?}");
        assert!(rope.factor.is_finite() && rope.factor > 0.0, "{rope:?}");
    }
    assert!(cfg.num_attention_heads % cfg.num_key_value_heads == 0);
    assert!(cfg.head_dim > 0 && cfg.head_dim % 2 == 0);
});
