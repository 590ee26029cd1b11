//! Inference latency of the digits MLP (64-128-10) on the CPU backend, batch 1 and
//! batch 64, through the same `Network` code the runtime serves with.

use burn::tensor::{Device, Tensor, TensorData};
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use edgewise_core::spec::ModelSpec;
use edgewise_model::{Network, weights};

fn bench_inference(c: &mut Criterion) {
    let spec = ModelSpec::preset("digits-mlp").expect("preset");
    let device = Device::flex();
    device.seed(1);
    let bytes = weights::to_bytes(&Network::new(&spec, &device).expect("network")).expect("save");
    let network = weights::load(&spec, &bytes, &device).expect("load");
    let mut group = c.benchmark_group("digits_mlp_cpu");
    for batch in [1usize, 64] {
        let values: Vec<f32> = (0..batch * 64).map(|i| (i % 17) as f32 / 16.0).collect();
        group.bench_with_input(BenchmarkId::from_parameter(batch), &batch, |b, &batch| {
            b.iter(|| {
                let input =
                    Tensor::<2>::from_data(TensorData::new(values.clone(), [batch, 64]), &device);
                network
                    .predict_probabilities(input)
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("f32")
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inference);
criterion_main!(benches);
