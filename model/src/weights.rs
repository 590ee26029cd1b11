//! Saving and loading a [`Network`]'s weights with burn's record format (burnpack).
//!
//! burn gives every parameter a random id; the ids are renumbered in module order
//! before saving, so the same weights always give the same bytes and hash.

use burn::module::{Module, ModuleMapper, Param, ParamId, ParameterValue};
use burn::store::ModuleRecord;
use burn::tensor::{Bool, Bytes, Device, Int, Tensor};
use edgewise_core::spec::ModelSpec;

use crate::ModelError;
use crate::network::Network;

/// Name of the weights format, as written in the manifest.
pub const WEIGHTS_FORMAT: &str = "burnpack";

/// Serialises the weights of `network` to deterministic burnpack bytes.
pub fn to_bytes(network: &Network) -> Result<Vec<u8>, ModelError> {
    let stable = network.valid().map(&mut SequentialIds::default());
    let bytes = stable
        .into_record()
        .into_bytes()
        .map_err(|err| ModelError::Weights(err.to_string()))?;
    Ok(bytes.to_vec())
}

/// Builds the network of `spec` on `device` and loads `weights` into it, in
/// inference mode. Any missing, extra or mis-shaped tensor is an error.
pub fn load(spec: &ModelSpec, weights: &[u8], device: &Device) -> Result<Network, ModelError> {
    let network = Network::new(spec, device)?;
    let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(weights.to_vec()))
        .map_err(|err| ModelError::Weights(err.to_string()))?;
    let loaded = network
        .try_load_record(record)
        .map_err(|err| ModelError::Weights(err.to_string()))?;
    Ok(loaded.valid())
}

/// Gives parameters ids 0, 1, 2, … in visiting order.
#[derive(Default)]
struct SequentialIds {
    next: u64,
}

impl SequentialIds {
    fn renumber<T: ParameterValue>(&mut self, param: Param<T>) -> Param<T> {
        let (_, value, mapper) = param.consume();
        let id = ParamId::from(self.next);
        self.next += 1;
        Param::from_mapped_value(id, value, mapper)
    }
}

impl ModuleMapper for SequentialIds {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.renumber(param)
    }

    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        self.renumber(param)
    }

    fn map_bool<const D: usize>(
        &mut self,
        param: Param<Tensor<D, Bool>>,
    ) -> Param<Tensor<D, Bool>> {
        self.renumber(param)
    }
}
