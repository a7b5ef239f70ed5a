using Microsoft.ML.Diffusion.MLNet;
using Xunit;

namespace Microsoft.ML.Diffusion.Tests.MLNet;

/// <summary>Cancellation, periodic checkpoints and resuming, through the ML.NET estimator.</summary>
public sealed class TrainingControlTests : IDisposable
{
    private readonly string _folder = Directory.CreateTempSubdirectory("mldiffusion-control-").FullName;

    private (MLContext ml, IDataView data, string images) Setup()
    {
        var ml = new MLContext(seed: 1);
        string images = Path.Combine(_folder, "images");
        var paths = MLNetTestData.WriteShapeImages(images, count: 32);
        return (ml, ml.Data.LoadFromEnumerable(paths.Select(p => new ImagePathRow { Path = Path.GetFileName(p) })), images);
    }

    private static IEstimator<ITransformer> Pipeline(MLContext ml, string images, DiffusionTrainingOptions options)
        => ml.Transforms.LoadImages("Image", images, "Path").Append(ml.Transforms.ResizeImages("Image", 16, 16)).Append(ml.Transforms.TrainDiffusion(options));

    [Fact]
    public void CancelExecutionStopsTrainingAndKeepsACheckpointToResumeFrom()
    {
        var (ml, data, images) = Setup();
        string checkpoint = Path.Combine(_folder, "state.zip");
        var options = MLNetTestData.TinyTraining(steps: 40);
        options.CheckpointPath = checkpoint;
        options.CheckpointEvery = 5;
        options.ReportEvery = 1;
        options.Progress = p => { if (p.Step == 12) ml.CancelExecution(); };

        Assert.ThrowsAny<OperationCanceledException>(() => Pipeline(ml, images, options).Fit(data));
        Assert.True(File.Exists(checkpoint));
        Assert.Empty(Directory.GetFiles(_folder, "*.tmp", SearchOption.AllDirectories));

        // A new context resumes from the saved step and finishes the remaining steps.
        var resumedContext = new MLContext(seed: 1);
        var resumedOptions = MLNetTestData.TinyTraining(steps: 40);
        resumedOptions.CheckpointPath = checkpoint;
        var steps = new List<int>();
        resumedOptions.ReportEvery = 1;
        resumedOptions.Progress = p => steps.Add(p.Step);
        var model = Pipeline(resumedContext, images, resumedOptions).Fit(data);
        Assert.Equal(13, steps[0]);   // cancelled after step 12, which the checkpoint holds
        Assert.Equal(40, steps[^1]);
        Assert.Equal(40, DiffusionTrainingTransformer.FindModel(model).TrainingSteps);
    }

    [Fact]
    public void ResumedTrainingMatchesUninterruptedTraining()
    {
        var (ml, data, images) = Setup();
        var straight = DiffusionTrainingTransformer.FindModel(Pipeline(ml, images, MLNetTestData.TinyTraining(steps: 12)).Fit(data));

        string checkpoint = Path.Combine(_folder, "resume.zip");
        using var cts = new CancellationTokenSource();
        var first = MLNetTestData.TinyTraining(steps: 12);
        first.CheckpointPath = checkpoint;
        first.CancellationToken = cts.Token;
        first.ReportEvery = 1;
        first.Progress = p => { if (p.Step == 7) cts.Cancel(); };
        Assert.ThrowsAny<OperationCanceledException>(() => Pipeline(new MLContext(seed: 1), images, first).Fit(data));

        var second = MLNetTestData.TinyTraining(steps: 12);
        second.CheckpointPath = checkpoint;
        var resumed = DiffusionTrainingTransformer.FindModel(Pipeline(new MLContext(seed: 1), images, second).Fit(data));

        Assert.Equal(straight.Network.parameters().SelectMany(p => p.data<float>().ToArray()),
                     resumed.Network.parameters().SelectMany(p => p.data<float>().ToArray()));
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);
}
