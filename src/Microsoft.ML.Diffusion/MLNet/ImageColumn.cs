using Microsoft.ML.Data;
using Microsoft.ML.Transforms.Image;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>
/// An input image column as the diffusion stages read it: an <see cref="MLImage"/> column of known
/// size (from <c>LoadImages</c> + <c>ResizeImages</c>) or a float vector of C·H·W pixels (from
/// <c>ExtractPixels</c>). Checks the column's type and shape against the model's and names the
/// column in every error.
/// </summary>
internal sealed class ImageColumn
{
    private ImageColumn(string name, bool isImage, int channels, int size, PixelRange range) : this(name, isImage, channels, size, size, range) { }

    private ImageColumn(string name, bool isImage, int channels, int height, int width, PixelRange range)
    {
        Name = name;
        IsImage = isImage;
        Channels = channels;
        Height = height;
        Width = width;
        Range = range;
    }

    public string Name { get; }
    public bool IsImage { get; }
    public int Channels { get; }

    /// <summary>The side of a square image column (training reads square images).</summary>
    public int Size => Height;

    public int Height { get; }
    public int Width { get; }
    public PixelRange Range { get; }
    public int Length => Channels * Height * Width;

    /// <summary>
    /// Resolves the column in <paramref name="schema"/>. <paramref name="size"/> may be null to take it
    /// from the column type; <paramref name="channels"/> is the model's channel count.
    /// </summary>
    public static ImageColumn Resolve(DataViewSchema schema, string name, int channels, int? size, PixelRange range)
    {
        var column = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' was not found in the input schema (columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}).");
        return Resolve(column.Name, column.Type, channels, size, range);
    }

    /// <summary>
    /// Resolves a column of images of exactly <paramref name="height"/> × <paramref name="width"/> (a latent model's
    /// editing size, which need not be square). A square size is <see cref="Resolve(DataViewSchema, string, int, int?, PixelRange)"/>'s check.
    /// </summary>
    public static ImageColumn Resolve(DataViewSchema schema, string name, int channels, int height, int width, PixelRange range)
    {
        if (height == width) return Resolve(schema, name, channels, (int?)height, range);
        var column = schema.GetColumnOrNull(name)
            ?? throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' was not found in the input schema (columns: {string.Join(", ", schema.Where(c => !c.IsHidden).Select(c => c.Name))}).");
        switch (column.Type)
        {
            case ImageDataViewType image:
                if (image.Height != 0 && (image.Height != height || image.Width != width))
                    throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' holds {image.Width}×{image.Height} images but the stage needs {width}×{height} (resize them with ResizeImages, or set the stage's width and height).");
                return new ImageColumn(name, true, channels, height, width, range);
            case VectorDataViewType vector when vector.ItemType == NumberDataViewType.Single && vector.IsKnownSize:
                if (vector.Size != channels * height * width)
                    throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' has {vector.Size} values per row, but the stage needs {channels}×{height}×{width} = {channels * height * width}.");
                return new ImageColumn(name, false, channels, height, width, range);
            default:
                throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' must be an image (LoadImages/ResizeImages) or a known-size vector of Single pixels (ExtractPixels), but it is {column.Type}.");
        }
    }

    /// <summary>The same check on a <see cref="SchemaShape"/> (estimators' schema propagation).</summary>
    public static void Check(SchemaShape shape, string name)
    {
        if (!shape.TryFindColumn(name, out var column))
            throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' was not found in the input schema.");
        bool isImage = column.Kind == SchemaShape.Column.VectorKind.Scalar && column.ItemType is ImageDataViewType;
        bool isVector = column.Kind == SchemaShape.Column.VectorKind.Vector && column.ItemType == NumberDataViewType.Single;
        if (!isImage && !isVector)
            throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' must be an image (LoadImages/ResizeImages) or a known-size vector of Single pixels (ExtractPixels), but it is {column.ItemType}{(column.Kind == SchemaShape.Column.VectorKind.Scalar ? "" : " vector")}.");
    }

    private static ImageColumn Resolve(string name, DataViewType type, int channels, int? size, PixelRange range)
    {
        switch (type)
        {
            case ImageDataViewType image:
                if (image.Height == 0 || image.Width == 0)
                {
                    if (size is null)
                        throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' has no fixed size; resize the images (ResizeImages) or set the image size option.");
                    return new ImageColumn(name, true, channels, size.Value, range);
                }
                if (image.Height != image.Width)
                    throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' holds {image.Width}×{image.Height} images; the model needs square images (resize them with ResizeImages).");
                if (size is not null && size != image.Height)
                    throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' holds {image.Width}×{image.Height} images but the model needs {size}×{size}.");
                return new ImageColumn(name, true, channels, image.Height, range);

            case VectorDataViewType vector when vector.ItemType == NumberDataViewType.Single:
                if (!vector.IsKnownSize)
                    throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' is a vector of unknown size; the model needs {channels}×H×W pixels.");
                int inferred = size ?? InferSize(vector, channels, name);
                if (vector.Size != channels * inferred * inferred)
                    throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' has {vector.Size} values per row, but the model needs {channels}×{inferred}×{inferred} = {channels * inferred * inferred}.");
                return new ImageColumn(name, false, channels, inferred, range);

            default:
                throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' must be an image (LoadImages/ResizeImages) or a known-size vector of Single pixels (ExtractPixels), but it is {type}.");
        }
    }

    private static int InferSize(VectorDataViewType vector, int channels, string name)
    {
        // ExtractPixels records (C, H, W) as the vector's dimensions; otherwise the length must be C·S².
        var dims = vector.Dimensions;
        if (dims.Length == 3)
        {
            if (dims[0] != channels)
                throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' has {dims[0]} channels but the model uses {channels}.");
            if (dims[1] != dims[2])
                throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' holds {dims[2]}×{dims[1]} images; the model needs square images.");
            return dims[1];
        }
        int s = (int)Math.Round(Math.Sqrt(vector.Size / (double)channels));
        if (s * s * channels != vector.Size)
            throw new ArgumentOutOfRangeException(nameof(name), $"Image column '{name}' has {vector.Size} values, which is not {channels}×S×S for any S.");
        return s;
    }

    /// <summary>
    /// A reader that copies the current row's image into a span of <see cref="Length"/> floats in
    /// [−1, 1], failing with the column name and row on a wrong size or a NaN/infinite pixel.
    /// </summary>
    public Action<Span<float>> CreateReader(DataViewRow row)
    {
        var column = row.Schema[Name];
        if (IsImage)
        {
            var getter = row.GetGetter<MLImage>(column);
            MLImage image = null!;
            return destination =>
            {
                getter(ref image);
                if (image is null)
                    throw new InvalidOperationException($"Image column '{Name}' has no image at row {row.Position}.");
                if (image.Width != Width || image.Height != Height)
                    throw new InvalidOperationException($"Image column '{Name}' has a {image.Width}×{image.Height} image at row {row.Position}; the model needs {Width}×{Height}. Resize the images with ResizeImages.");
                if (image.BitsPerPixel != 32)
                    throw new InvalidOperationException($"Image column '{Name}' has a {image.BitsPerPixel}-bit image at row {row.Position}; 32-bit RGBA/BGRA images are expected.");
                ImagePixels.FromImage(image, Channels, destination);
            };
        }
        else
        {
            var getter = row.GetGetter<VBuffer<float>>(column);
            VBuffer<float> buffer = default;
            return destination =>
            {
                getter(ref buffer);
                if (buffer.Length != Length)
                    throw new InvalidOperationException($"Image column '{Name}' has {buffer.Length} values at row {row.Position}; the model needs {Length}.");
                buffer.CopyTo(destination);
                foreach (float v in destination)
                    if (!float.IsFinite(v))
                        throw new InvalidOperationException($"Image column '{Name}' has a NaN or infinite pixel at row {row.Position}.");
                ImagePixels.FromRange(destination, Range);
                foreach (float v in destination)
                    if (v is < -1.001f or > 1.001f)
                        throw new InvalidOperationException($"Image column '{Name}' has a pixel outside the {Range} range at row {row.Position} ({ImagePixels.ToRange(v, Range)}); set PixelRange to the column's range.");
            };
        }
    }
}
