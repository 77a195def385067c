//! The optimizer and the learning-rate schedule of a config, both built from Burn's
//! (`burn::optim`, its `lr_scheduler` and `grad_clipping`); Adam without weight decay as
//! [`FusedAdam`], Burn's Adam with its update in one pass on the CPU.

use burn::optim::decay::WeightDecayConfig;
use burn::optim::grad_clipping::GradientClippingConfig;
use burn::optim::lr_scheduler::LrSchedulerConfig;
use burn::optim::lr_scheduler::cosine::CosineAnnealingLrSchedulerConfig;
use burn::optim::lr_scheduler::exponential::ExponentialLrSchedulerConfig;
use burn::optim::lr_scheduler::linear::LinearLrSchedulerConfig;
use burn::optim::lr_scheduler::module_lr_scheduler::ModuleLrScheduler;
use burn::optim::lr_scheduler::sequential::SequentialLrSchedulerConfig;
use burn::optim::lr_scheduler::step::StepLrSchedulerConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{
    AdaGradConfig, AdamConfig, AdamWConfig, ModuleOptimizer, RmsPropConfig, SgdConfig,
};

use crate::config::{ExperimentConfig, LrSchedule, Optimizer};
use crate::error::{Error, Result};
use crate::train::fused_adam::FusedAdam;

/// The config's optimizer, with its weight decay and gradient clipping. Its state (moments,
/// velocities, sums, step counts) is what a checkpoint's `optimizer.bpk` holds.
pub fn optimizer(config: &ExperimentConfig) -> ModuleOptimizer {
    // Absent rather than zero when off: the default Adam is then Burn's plain Adam, whose
    // update the one-pass version reproduces bit for bit.
    let decay =
        (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let clip = config
        .grad_clip
        .map(|norm| GradientClippingConfig::Norm(norm as f32));
    let epsilon = config.epsilon as f32;
    // Burn's momentum dampens by default (0.1); PyTorch and Keras do not: v ← μ·v + g.
    let momentum = |nesterov| {
        Some(
            MomentumConfig::new()
                .with_momentum(config.momentum)
                .with_dampening(0.0)
                .with_nesterov(nesterov),
        )
    };
    let sgd = |momentum| {
        SgdConfig::new()
            .with_momentum(momentum)
            .with_weight_decay(decay.clone())
            .with_gradient_clipping(clip.clone())
            .init()
    };
    match config.optimizer {
        Optimizer::Sgd => sgd(None),
        Optimizer::Momentum => sgd(momentum(false)),
        Optimizer::Nesterov => sgd(momentum(true)),
        // Keras' RMSprop: no momentum, not centered (Burn's default momentum is 0.9).
        Optimizer::Rmsprop => RmsPropConfig::new()
            .with_alpha(config.rho as f32)
            .with_momentum(0.0)
            .with_centered(false)
            .with_epsilon(epsilon)
            .with_weight_decay(decay)
            .with_grad_clipping(clip)
            .init(),
        Optimizer::Adagrad => AdaGradConfig::new()
            .with_epsilon(epsilon)
            .with_weight_decay(decay)
            .with_grad_clipping(clip)
            .init(),
        // Burn's Adam, its update fused into one pass on the CPU; with weight decay, as is.
        Optimizer::Adam if decay.is_none() => {
            let adam = FusedAdam::new(config.adam_beta1 as f32, config.adam_beta2 as f32, epsilon);
            let optim = ModuleOptimizer::from(adam);
            match clip {
                Some(clip) => optim.with_grad_clipping(clip.init()),
                None => optim,
            }
        }
        Optimizer::Adam => AdamConfig::new()
            .with_beta_1(config.adam_beta1 as f32)
            .with_beta_2(config.adam_beta2 as f32)
            .with_epsilon(epsilon)
            .with_weight_decay(decay)
            .with_grad_clipping(clip)
            .init(),
        Optimizer::Adamw => AdamWConfig::new()
            .with_beta_1(config.adam_beta1 as f32)
            .with_beta_2(config.adam_beta2 as f32)
            .with_epsilon(epsilon)
            .with_weight_decay(config.weight_decay as f32)
            .with_grad_clipping(clip)
            .init(),
    }
}

/// The learning rate of each step, from Burn's schedulers.
///
/// Burn's schedulers keep a position and could be checkpointed as a record; instead the lr
/// of step k is treated as a pure function of (config, k): the scheduler is rebuilt from the
/// config and advanced to the checkpoint's global step. So a checkpoint needs no scheduler
/// state (its global step is the schedule's position), resume is exact by construction, and a
/// resume that changes `lr`, `epochs` or a schedule key (allowed: fine-tuning) follows the new
/// schedule from where the run stands instead of a saved state of the old one. Replaying costs
/// a few scalar operations per step done.
pub struct LrScheduleState {
    inner: ModuleLrScheduler,
}

impl LrScheduleState {
    /// The schedule of `config` for a run of `steps_per_epoch` × `epochs` steps, positioned to
    /// give the lr of step `global_step` (0-based) next.
    pub fn starting_at(
        config: &ExperimentConfig,
        steps_per_epoch: usize,
        global_step: usize,
    ) -> Result<Self> {
        let mut inner = scheduler(config, steps_per_epoch).map_err(|e| {
            Error::Usage(format!(
                "`lr_schedule` {}: Burn's scheduler refuses these settings: {e}",
                crate::config::enum_name(&config.lr_schedule)
            ))
        })?;
        for _ in 0..global_step {
            inner.step();
        }
        Ok(Self { inner })
    }

    /// The lr of the next step.
    pub fn next_lr(&mut self) -> f64 {
        self.inner.step().base()
    }
}

/// Warm-up (linear, lr/N … lr over steps 0..N) then the schedule, which counts its own steps
/// from the end of the warm-up.
fn scheduler(
    config: &ExperimentConfig,
    steps_per_epoch: usize,
) -> std::result::Result<ModuleLrScheduler, String> {
    let lr = config.lr;
    let warmup = config.lr_warmup_steps;
    let total = steps_per_epoch * config.epochs;
    let decay_steps = config.lr_decay_steps.unwrap_or(steps_per_epoch);
    let main: LrSchedulerConfig = match config.lr_schedule {
        LrSchedule::Constant => LrSchedulerConfig::Constant(lr),
        LrSchedule::Step => StepLrSchedulerConfig::new(lr, decay_steps)
            .with_gamma(config.lr_decay_rate)
            .into(),
        // Per step, the factor that makes lr_decay_rate over lr_decay_steps.
        LrSchedule::Exponential => ExponentialLrSchedulerConfig::new(
            lr,
            config.lr_decay_rate.powf(1.0 / decay_steps as f64),
        )
        .into(),
        // Reaches lr_min just after the run's last step.
        LrSchedule::Cosine => {
            CosineAnnealingLrSchedulerConfig::new(lr, total.saturating_sub(warmup).max(1))
                .with_min_lr(config.lr_min)
                .into()
        }
    };
    // One warm-up step is lr itself: no warm-up.
    if warmup <= 1 {
        return SequentialLrSchedulerConfig::new(vec![main], vec![]).init();
    }
    // Linear from lr/N in N−1 equal increments: step k < N gets lr·(k+1)/N.
    let ramp = LinearLrSchedulerConfig::new(lr / warmup as f64, lr, warmup - 1);
    SequentialLrSchedulerConfig::new(vec![ramp.into(), main], vec![warmup]).init()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lrs(config: &ExperimentConfig, steps_per_epoch: usize, n: usize) -> Vec<f64> {
        let mut s = LrScheduleState::starting_at(config, steps_per_epoch, 0).unwrap();
        (0..n).map(|_| s.next_lr()).collect()
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-12)
    }

    #[test]
    fn the_default_is_the_configured_lr_exactly() {
        let c = ExperimentConfig::default();
        assert!(lrs(&c, 10, 30).iter().all(|&lr| lr == c.lr));
    }

    #[test]
    fn schedules_follow_their_formulas() {
        let base = ExperimentConfig {
            lr: 0.1,
            epochs: 2,
            ..Default::default()
        };
        let step = ExperimentConfig {
            lr_schedule: LrSchedule::Step,
            lr_decay_rate: 0.5,
            lr_decay_steps: Some(4),
            ..base.clone()
        };
        let exponential = ExperimentConfig {
            lr_schedule: LrSchedule::Exponential,
            lr_decay_rate: 0.5,
            ..base.clone()
        };
        let cosine = ExperimentConfig {
            lr_schedule: LrSchedule::Cosine,
            lr_min: 0.01,
            lr_warmup_steps: 5,
            ..base.clone()
        };
        let pi = std::f64::consts::PI;
        for k in 0..20 {
            let kf = k as f64;
            let got = lrs(&step, 10, 20)[k];
            assert!(
                close(got, 0.1 * 0.5f64.powi(k as i32 / 4)),
                "step {k}: {got}"
            );
            let got = lrs(&exponential, 10, 20)[k];
            assert!(close(got, 0.1 * 0.5f64.powf(kf / 10.0)), "exp {k}: {got}");
            let want = if k < 5 {
                0.1 * (kf + 1.0) / 5.0
            } else {
                0.01 + 0.5 * (0.1 - 0.01) * (1.0 + (pi * (kf - 5.0) / 15.0).cos())
            };
            let got = lrs(&cosine, 10, 20)[k];
            assert!(close(got, want), "cosine {k}: {got} vs {want}");
        }
    }

    #[test]
    fn a_schedule_resumed_at_step_k_continues_exactly() {
        let c = ExperimentConfig {
            lr_schedule: LrSchedule::Cosine,
            lr_warmup_steps: 7,
            epochs: 3,
            ..Default::default()
        };
        let whole = lrs(&c, 10, 30);
        let mut resumed = LrScheduleState::starting_at(&c, 10, 12).unwrap();
        let rest: Vec<f64> = (12..30).map(|_| resumed.next_lr()).collect();
        assert_eq!(rest, whole[12..]);
    }
}
