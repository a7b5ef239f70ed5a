using Microsoft.ML.Diffusion.Schedules;
using Microsoft.ML.Diffusion.Tests.Infrastructure;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.Schedules;

public class NoiseScheduleTests
{
    public static TheoryData<string, NoiseScheduleKind> Kinds => new()
    {
        { "linear", NoiseScheduleKind.Linear },
        { "scaled_linear", NoiseScheduleKind.ScaledLinear },
        { "sigmoid", NoiseScheduleKind.Sigmoid },
        { "cosine", NoiseScheduleKind.Cosine },
    };

    [Theory]
    [MemberData(nameof(Kinds))]
    public void BetasAndAlphasCumprodMatchReference(string name, NoiseScheduleKind kind)
    {
        var reference = ReferenceData.Root.GetProperty("schedules").GetProperty(name);
        var args = reference.GetProperty("args");
        var options = new NoiseScheduleOptions { Kind = kind, TrainSteps = ReferenceData.Root.GetProperty("T").GetInt32() };
        if (kind == NoiseScheduleKind.Cosine)
            options = options with { CosineOffset = args.GetProperty("s").GetDouble(), MaxBeta = args.GetProperty("max_beta").GetDouble() };
        else
            options = options with { BetaStart = args.GetProperty("beta_start").GetDouble(), BetaEnd = args.GetProperty("beta_end").GetDouble() };

        var schedule = NoiseSchedule.Create(options);

        Assertions.Close(ReferenceData.Doubles(reference.GetProperty("betas")), schedule.Betas, 1e-6, 0, $"{name}.betas");
        Assertions.Close(ReferenceData.Doubles(reference.GetProperty("alphas_cumprod")), schedule.AlphasCumprod, 1e-6, 0, $"{name}.alphas_cumprod");
    }

    [Fact]
    public void PosteriorCoefficientsMatchReference()
    {
        var reference = ReferenceData.Root.GetProperty("linear_posterior");
        var schedule = NoiseSchedule.Linear();

        Assertions.Close(ReferenceData.Doubles(reference.GetProperty("variance_fixed_small")), schedule.PosteriorVariance, 1e-6, 1e-12, "variance");
        Assertions.Close(ReferenceData.Doubles(reference.GetProperty("mean_coef_x0")), schedule.PosteriorMeanCoefX0, 1e-6, 1e-12, "mean_coef_x0");
        Assertions.Close(ReferenceData.Doubles(reference.GetProperty("mean_coef_xt")), schedule.PosteriorMeanCoefXt, 1e-6, 1e-12, "mean_coef_xt");
    }

    [Theory]
    [InlineData(NoiseScheduleKind.Linear, 10)]
    [InlineData(NoiseScheduleKind.Cosine, 50)]
    [InlineData(NoiseScheduleKind.Sigmoid, 4000)]
    public void AnyLengthGivesAMonotoneSchedule(NoiseScheduleKind kind, int steps)
    {
        var schedule = NoiseSchedule.Create(new NoiseScheduleOptions { Kind = kind, TrainSteps = steps });
        Assert.Equal(steps, schedule.Length);
        for (int t = 1; t < steps; t++)
            Assert.True(schedule.AlphasCumprod[t] < schedule.AlphasCumprod[t - 1], $"ᾱ must decrease at t = {t}");
        Assert.All(schedule.Betas, b => Assert.InRange(b, 0.0, 1.0));
        Assert.Equal(1.0, schedule.AlphaCumprodAt(-1));
    }

    [Fact]
    public void InvalidOptionsNameTheSetting()
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => NoiseSchedule.Create(new NoiseScheduleOptions { BetaEnd = 1.5 }));
        Assert.Equal("BetaEnd", e.ParamName);
        e = Assert.Throws<ArgumentOutOfRangeException>(() => NoiseSchedule.Create(new NoiseScheduleOptions { TrainSteps = 1 }));
        Assert.Equal("TrainSteps", e.ParamName);
    }
}
