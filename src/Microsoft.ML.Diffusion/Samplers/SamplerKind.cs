namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>The reverse-process samplers the library ships.</summary>
public enum SamplerKind
{
    /// <summary>DDPM ancestral sampling (Ho et al. 2020, Algorithm 2); usually run with all T steps.</summary>
    Ddpm,
    /// <summary>DDIM (Song et al. 2021): strided timesteps, deterministic at η = 0.</summary>
    Ddim,
    /// <summary>DPM-Solver++(2M) (Lu et al. 2022): second-order multistep solver, good in 10–25 steps.</summary>
    DpmSolverPlusPlus,
}
