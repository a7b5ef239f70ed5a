using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// An inpainting mask column (1 = redraw): an image of the model's size, whose grey level is the value, or a float vector
/// of H·W values (one mask for every channel) or C·H·W values, each in [0, 1]. Errors name the column and the row.
/// </summary>
internal sealed class MaskColumn
{
    private MaskColumn(string name, bool isImage, int length, int height, int width)
    {
        Name = name;
        IsImage = isImage;
        Length = length;
        Height = height;
        Width = width;
    }

    public int Height { get; }
    public int Width { get; }

    public string Name { get; }
    public bool IsImage { get; }

    /// <summary>Values per row: H·W or C·H·W.</summary>
    public int Length { get; }

    public static MaskColumn Resolve(DataViewSchema schema, string name, int channels, int height, int width)
    {
        string size = $"{width}×{height}", values = $"{height}×{width}";   // an image's size; a planar vector's dimensions
        var column = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException(nameof(name), $"Mask column '{name}' was not found in the input schema (columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}).");
        switch (column.Type)
        {
            case ImageDataViewType image:
                if (image.Height != 0 && (image.Height != height || image.Width != width))
                    throw new ArgumentOutOfRangeException(nameof(name), $"Mask column '{name}' holds {image.Width}×{image.Height} images but the model needs {size}.");
                return new MaskColumn(name, true, height * width, height, width);
            case VectorDataViewType vector when vector.ItemType == NumberDataViewType.Single && vector.IsKnownSize:
                if (vector.Size != height * width && vector.Size != channels * height * width)
                    throw new ArgumentOutOfRangeException(nameof(name), $"Mask column '{name}' has {vector.Size} values per row, but the model needs {values} = {height * width} (one mask for all channels) or {channels}×{values} = {channels * height * width}.");
                return new MaskColumn(name, false, vector.Size, height, width);
            default:
                throw new ArgumentOutOfRangeException(nameof(name), $"Mask column '{name}' must be an image or a known-size vector of Single values in [0, 1], but it is {column.Type}.");
        }
    }

    /// <summary>The same check on a <see cref="SchemaShape"/> (estimators' schema propagation).</summary>
    public static void Check(SchemaShape shape, string name)
    {
        if (!shape.TryFindColumn(name, out var column))
            throw new ArgumentOutOfRangeException(nameof(name), $"Mask column '{name}' was not found in the input schema.");
        bool isImage = column.Kind == SchemaShape.Column.VectorKind.Scalar && column.ItemType is ImageDataViewType;
        bool isVector = column.Kind == SchemaShape.Column.VectorKind.Vector && column.ItemType == NumberDataViewType.Single;
        if (!isImage && !isVector)
            throw new ArgumentOutOfRangeException(nameof(name), $"Mask column '{name}' must be an image or a known-size vector of Single values in [0, 1], but it is {column.ItemType}{(column.Kind == SchemaShape.Column.VectorKind.Scalar ? "" : " vector")}.");
    }

    /// <summary>A reader of the current row's mask as <see cref="Length"/> floats in [0, 1].</summary>
    public Func<float[]> CreateReader(DataViewRow row)
    {
        var column = row.Schema[Name];
        if (IsImage)
        {
            var getter = row.GetGetter<MLImage>(column);
            MLImage image = null!;
            return () =>
            {
                getter(ref image);
                if (image is null)
                    throw new InvalidOperationException($"Mask column '{Name}' has no image at row {row.Position}.");
                if (image.Width != Width || image.Height != Height)
                    throw new InvalidOperationException($"Mask column '{Name}' has a {image.Width}×{image.Height} image at row {row.Position}; the model needs {Width}×{Height}.");
                var grey = new float[Length];
                ImagePixels.FromImage(image, 1, grey);
                for (int i = 0; i < grey.Length; i++) grey[i] = Math.Clamp((grey[i] + 1f) / 2f, 0f, 1f);
                return grey;
            };
        }
        var vector = row.GetGetter<VBuffer<float>>(column);
        VBuffer<float> buffer = default;
        return () =>
        {
            vector(ref buffer);
            if (buffer.Length != Length)
                throw new InvalidOperationException($"Mask column '{Name}' has {buffer.Length} values at row {row.Position}; {Length} are expected.");
            var values = new float[Length];
            buffer.CopyTo(values);
            foreach (float v in values)
                if (!(v >= 0 && v <= 1))
                    throw new InvalidOperationException($"Mask column '{Name}' has the value {v} at row {row.Position}; mask values must lie in [0, 1] (1 = redraw). Scale an ExtractPixels mask by 1/255.");
            return values;
        };
    }
}
