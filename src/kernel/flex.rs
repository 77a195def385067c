//! Burn's flex tensors as the custom operations ([`super::dense`], [`super::conv`]) take them:
//! the training backend's types, a layer's input, weight and bias handed over as flex
//! primitives, and the gradients of a backward pass handed back.

use burn::backend::Flex;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::{Autodiff, NodeId, checkpoint::strategy::NoCheckpointing};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;

/// The backend of a training step on flex, as Burn's dispatch holds it.
pub(super) type Train = Autodiff<Flex, NoCheckpointing>;
pub(super) type TrainTensor = burn::backend::tensor::FloatTensor<Train>;

/// `train` on `x`, `weight` and `bias` as autodiff primitives when `x` is tracked by autodiff,
/// `infer` on them as flex tensors otherwise. Nothing when one of them is not flex's (another
/// checkpointing strategy than training's, or a model on another device than its input): the
/// caller then runs Burn's layer, which handles (or reports) both.
pub(super) fn with_primitives<const D: usize, const W: usize>(
    x: &Tensor<D>,
    weight: Tensor<W>,
    bias: Tensor<1>,
    train: impl FnOnce(TrainTensor, TrainTensor, TrainTensor) -> TrainTensor,
    infer: impl FnOnce(&FlexTensor, &FlexTensor, &FlexTensor) -> FlexTensor,
) -> Option<Tensor<D>> {
    if x.is_autodiff() {
        let x = x.clone().try_into_primitive::<Train>().ok()?;
        let weight = weight.try_into_primitive::<Train>().ok()?;
        let bias = bias.try_into_primitive::<Train>().ok()?;
        Some(Tensor::from_primitive::<Train>(train(x, weight, bias)))
    } else {
        let x = x.clone().try_into_primitive::<Flex>().ok()?;
        let weight = weight.try_into_primitive::<Flex>().ok()?;
        let bias = bias.try_into_primitive::<Flex>().ok()?;
        Some(Tensor::from_primitive::<Flex>(infer(&x, &weight, &bias)))
    }
}

/// Registers each computed gradient (`values`) for the parent in its place (`parents`, by node
/// id) that takes one.
pub(super) fn register<const N: usize>(
    grads: &mut Gradients,
    parents: [Option<NodeId>; N],
    values: [Option<FlexTensor>; N],
) {
    for (node, value) in parents.into_iter().zip(values) {
        if let (Some(node), Some(value)) = (node, value) {
            grads.register::<Flex>(node, value);
        }
    }
}
