namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>The samplers the library ships, by the enum names earlier versions wrote into model zips (which still load as <see cref="SamplerName"/>s).</summary>
internal enum SamplerKind
{
    /// <summary>DDPM ancestral sampling (Ho et al. 2020, Algorithm 2); usually run with all T steps.</summary>
    Ddpm,
    /// <summary>DDIM (Song et al. 2021): strided timesteps, deterministic at η = 0.</summary>
    Ddim,
    /// <summary>DPM-Solver++(2M) (Lu et al. 2022): second-order multistep solver, good in 10–25 steps.</summary>
    DpmSolverPlusPlus,
    /// <summary>Euler ancestral (k-diffusion's sample_euler_ancestral) on Karras noise levels.</summary>
    EulerAncestral,
    /// <summary>Heun's second-order method (Karras et al. 2022, Algorithm 1) on Karras noise levels: two network evaluations per step but the last.</summary>
    Heun,
}
