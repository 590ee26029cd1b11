//! The GPU (wgpu) path computes what the CPU (flex) path computes, on the same
//! weights; and `auto` never picks a software adapter.
//!
//! Where no wgpu adapter exists, the comparison is skipped with a notice unless
//! `EDGEWISE_REQUIRE_GPU_TEST=1` (CI installs Mesa's software Vulkan driver and sets it).

use burn::tensor::{Device, Tensor, TensorData};
use edgewise_core::spec::ModelSpec;
use edgewise_model::device::{candidates, gpu_adapters};
use edgewise_model::{DeviceChoice, Network, weights};

fn inputs(batch: usize, width: usize) -> Vec<f32> {
    (0..batch * width)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0) - 1.0)
        .collect()
}

fn probabilities(network: &Network, values: &[f32], batch: usize, device: &Device) -> Vec<f32> {
    let width = values.len() / batch;
    let input = Tensor::<2>::from_data(TensorData::new(values.to_vec(), [batch, width]), device);
    network
        .predict_probabilities(input)
        .into_data()
        .try_to_vec::<f32>()
        .expect("f32 output")
}

#[test]
fn auto_never_picks_a_software_adapter() {
    let chosen = candidates(DeviceChoice::Auto).expect("auto always has the CPU");
    assert!(!chosen[0].is_gpu, "the CPU is always a candidate");
    assert!(chosen.iter().all(|candidate| !candidate.is_software));
}

#[test]
fn gpu_outputs_match_cpu_outputs() {
    let Some(adapter) = gpu_adapters().into_iter().next() else {
        if std::env::var("EDGEWISE_REQUIRE_GPU_TEST").as_deref() == Ok("1") {
            panic!("EDGEWISE_REQUIRE_GPU_TEST=1 but no wgpu adapter was found");
        }
        eprintln!("no wgpu adapter on this machine: GPU/CPU comparison skipped");
        return;
    };
    eprintln!("comparing {} with the CPU", adapter.description);
    let cpu = Device::flex();
    for preset in ["digits-mlp", "digits-cnn"] {
        let spec = ModelSpec::preset(preset).expect("preset");
        cpu.seed(7);
        let trained = Network::new(&spec, &cpu).expect("network");
        let bytes = weights::to_bytes(&trained).expect("save");
        let on_cpu = weights::load(&spec, &bytes, &cpu).expect("load on cpu");
        let on_gpu = weights::load(&spec, &bytes, &adapter.device).expect("load on gpu");
        for batch in [1, 64] {
            let values = inputs(batch, spec.input_len());
            let expected = probabilities(&on_cpu, &values, batch, &cpu);
            let got = probabilities(&on_gpu, &values, batch, &adapter.device);
            assert_eq!(expected.len(), got.len());
            for (index, (a, b)) in expected.iter().zip(&got).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-4,
                    "{preset} batch {batch} value {index}: cpu {a} gpu {b}"
                );
            }
        }
    }
}

#[test]
fn weights_round_trip_and_are_deterministic() {
    let spec = ModelSpec::preset("digits-cnn").expect("preset");
    let device = Device::flex();
    device.seed(3);
    let network = Network::new(&spec, &device).expect("network");
    let first = weights::to_bytes(&network).expect("save");
    assert_eq!(first, weights::to_bytes(&network).expect("save again"));
    let loaded = weights::load(&spec, &first, &device).expect("load");
    assert_eq!(first, weights::to_bytes(&loaded).expect("save loaded"));
    let other = ModelSpec::preset("digits-mlp").expect("preset");
    assert!(
        weights::load(&other, &first, &device).is_err(),
        "weights of another spec must not load"
    );
}
