namespace Microsoft.ML.Diffusion.Samplers;

/// <summary>
/// RePaint's walk over the timesteps (Lugmayr et al. 2022, Algorithm 1; diffusers' RePaintScheduler.set_timesteps): down
/// one step at a time, and at every JumpLength-th step, while that stretch has samples left, back up JumpLength steps.
/// A step up is a forward-process re-noising; a step down is a denoising step.
/// </summary>
internal static class RePaintTimesteps
{
    public static int[] Create(int trainSteps, int steps, int jumpLength, int resamplings)
    {
        if (steps > trainSteps) throw new ArgumentOutOfRangeException(nameof(steps), steps, $"Steps must not exceed the schedule's {trainSteps} steps.");
        var jumps = new Dictionary<int, int>();
        for (int j = 0; j < steps - jumpLength; j += jumpLength) jumps[j] = resamplings - 1;
        var walk = new List<int>();
        int t = steps;
        while (t >= 1)
        {
            t--;
            walk.Add(t);
            if (jumps.TryGetValue(t, out int left) && left > 0)
            {
                jumps[t] = left - 1;
                for (int i = 0; i < jumpLength; i++) walk.Add(++t);
            }
        }
        int ratio = trainSteps / steps;
        return [.. walk.Select(s => s * ratio)];
    }
}
