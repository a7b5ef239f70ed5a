using Microsoft.ML.Diffusion.Conditioning;
using Microsoft.ML.Diffusion.Networks;
using TorchSharp.Modules;
using static TorchSharp.torch;
using static TorchSharp.torch.nn;

[assembly: NoisePredictorRegistration(Microsoft.ML.Diffusion.Tests.Networks.TinyConvOptions.Name,
    typeof(Microsoft.ML.Diffusion.Tests.Networks.TinyConvOptions), typeof(Microsoft.ML.Diffusion.Tests.Networks.TinyConvNoisePredictor))]

namespace Microsoft.ML.Diffusion.Tests.Networks;

/// <summary>A user's own network: registered from this assembly only, unknown to the library.</summary>
public sealed record TinyConvOptions : NoisePredictorOptions
{
    public const string Name = "tests-tiny-conv";

    public int Width { get; init; } = 16;

    public override IReadOnlyList<ConditionKind> SupportedConditions => [ConditionKind.None, ConditionKind.Class];

    public override void Validate()
    {
        base.Validate();
        if (Width < 1) throw new ArgumentOutOfRangeException(nameof(Width), Width, "Width must be positive.");
    }
}

/// <summary>Two 3×3 convolutions with the step (and class) embedding added in between; a 1×1 output convolution.</summary>
public sealed class TinyConvNoisePredictor : NoisePredictor
{
    private readonly Linear time_projection;
    private readonly Embedding? class_embedding;
    private readonly Conv2d input_conv, hidden_conv, output_conv;
    private readonly int _width;

    public TinyConvNoisePredictor(TinyConvOptions options) : base(nameof(TinyConvNoisePredictor), options)
    {
        _width = options.Width;
        time_projection = Linear(2, options.Width);
        if (options.Condition.Kind == ConditionKind.Class) class_embedding = Embedding(options.Condition.ClassCount + 1, options.Width);
        input_conv = Conv2d(options.ImageChannels, options.Width, 3, padding: 1);
        hidden_conv = Conv2d(options.Width, options.Width, 3, padding: 1);
        output_conv = Conv2d(options.Width, options.ImageChannels, 1);
        RegisterComponents();
    }

    public override Tensor Forward(Tensor x, Tensor timesteps, ConditionBatch? condition)
    {
        using var scope = NewDisposeScope();
        if (condition is not null && class_embedding is null) throw new ArgumentException("This model is unconditional; it takes no condition.", nameof(condition));
        var phase = timesteps.to_type(float32).unsqueeze(1) / 1000.0;
        var emb = time_projection.forward(cat([phase.sin(), phase.cos()], 1));
        if (class_embedding is not null)
        {
            // Class c is row c + 1; row 0 is the null condition (no condition, or a dropped one).
            var classes = condition is null ? zeros(x.shape[0], dtype: int64, device: x.device) : condition.Values.to_type(int64) + 1;
            if (condition?.NullMask is { } isNull) classes = classes.masked_fill(isNull, 0);
            emb = emb + class_embedding.forward(classes);
        }
        var h = functional.silu(input_conv.forward(x)) + emb.view(-1, _width, 1, 1);
        h = functional.silu(hidden_conv.forward(h));
        return output_conv.forward(h).MoveToOuterDisposeScope();
    }
}
