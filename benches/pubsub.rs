//! Benchmarks of the pub/sub registry: matching a deep topic among many subscriptions, and fan-out enumeration.
//!
//! Run with `cargo bench --bench pubsub` (add `-- --quick` for a short run).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperws::pubsub::Registry;

/// A small deterministic generator (xorshift64*), so every run builds the same registry.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The 6 levels of the bench topics (`t3/s17/k2/d42/m1/u0`) and how many values each takes.
const LEVELS: [(&str, u64); 6] = [
    ("t", 10),
    ("s", 50),
    ("k", 5),
    ("d", 200),
    ("m", 8),
    ("u", 3),
];
const DEEP_TOPIC: &str = "t3/s17/k2/d42/m1/u0";

/// A random filter over [`LEVELS`]: each level exact, or `+` one time in seven; one filter in ten ends with `#`
/// after 2 to 5 levels.
fn random_filter(rng: &mut Rng) -> String {
    let end = if rng.chance(10) {
        2 + rng.below(4) as usize
    } else {
        LEVELS.len()
    };
    let mut levels: Vec<String> = LEVELS[..end]
        .iter()
        .map(|&(prefix, values)| {
            if rng.chance(14) {
                "+".to_owned()
            } else {
                format!("{prefix}{}", rng.below(values))
            }
        })
        .collect();
    if end < LEVELS.len() {
        levels.push("#".to_owned());
    }
    levels.join("/")
}

/// 100 000 subscriptions: 20 000 keys with 5 random filters each, plus 50 keys on the bench topic itself.
fn big_registry() -> Registry<u64> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut registry = Registry::new();
    for key in 0..20_000 {
        while registry.topics(key).len() < 5 {
            registry
                .subscribe(key, &random_filter(&mut rng))
                .expect("valid filter");
        }
    }
    for key in 20_000..20_050 {
        registry.subscribe(key, DEEP_TOPIC).expect("valid filter");
    }
    registry
}

fn deep_topic_matching(c: &mut Criterion) {
    let registry = big_registry();
    let receivers = registry.count_matches(DEEP_TOPIC).expect("valid topic");
    println!(
        "registry: {} subscriptions; '{DEEP_TOPIC}' reaches {receivers} keys",
        registry.len()
    );
    let mut group = c.benchmark_group("match_100k_subscriptions");
    let mut keys = Vec::with_capacity(receivers);
    group.bench_function("for_each_match_deep_topic", |b| {
        b.iter(|| {
            keys.clear();
            registry
                .for_each_match(black_box(DEEP_TOPIC), |key| keys.push(key))
                .expect("valid topic");
            black_box(keys.len())
        })
    });
    group.bench_function("count_matches_deep_topic", |b| {
        b.iter(|| {
            registry
                .count_matches(black_box(DEEP_TOPIC))
                .expect("valid topic")
        })
    });
    group.bench_function("count_matches_unsubscribed_topic", |b| {
        b.iter(|| {
            registry
                .count_matches(black_box("t9/s49/k4/d199/m7/x"))
                .expect("valid topic")
        })
    });
    // Without wildcard filters the walk follows one path and allocates nothing.
    let mut exact_only = Registry::new();
    for key in 0..100_000 {
        let filter = format!(
            "t{}/s{}/k{}/d{}/m{}/u{}",
            key % 10,
            key % 50,
            key % 5,
            key % 200,
            key % 8,
            key % 3
        );
        exact_only.subscribe(key, &filter).expect("valid filter");
    }
    group.bench_function("count_matches_deep_topic_exact_filters_only", |b| {
        b.iter(|| {
            exact_only
                .count_matches(black_box(DEEP_TOPIC))
                .expect("valid topic")
        })
    });
    group.finish();
}

fn fan_out(c: &mut Criterion) {
    const KEYS: u64 = 10_000;
    let topic = "chat/room/1";
    let mut exact = Registry::new();
    let mut overlapping = Registry::new();
    for key in 0..KEYS {
        exact.subscribe(key, topic).expect("valid filter");
        overlapping.subscribe(key, topic).expect("valid filter");
        if key % 2 == 0 {
            overlapping
                .subscribe(key, "chat/room/+")
                .expect("valid filter");
        }
        if key % 5 == 0 {
            overlapping.subscribe(key, "chat/#").expect("valid filter");
        }
    }
    let mut group = c.benchmark_group("fan_out_10k");
    group.throughput(Throughput::Elements(KEYS));
    let mut keys = Vec::with_capacity(KEYS as usize);
    for (name, registry) in [
        ("one_filter", &exact),
        ("three_overlapping_filters", &overlapping),
    ] {
        assert_eq!(registry.count_matches(topic), Ok(KEYS as usize));
        group.bench_function(name, |b| {
            b.iter(|| {
                keys.clear();
                registry
                    .for_each_match(black_box(topic), |key| keys.push(key))
                    .expect("valid topic");
                black_box(keys.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, deep_topic_matching, fan_out);
criterion_main!(benches);
