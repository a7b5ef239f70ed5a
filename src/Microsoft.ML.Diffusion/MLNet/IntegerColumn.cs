using Microsoft.ML.Data;

namespace Microsoft.ML.Diffusion.MLNet;

/// <summary>Reads any of ML.NET's integer column types (seeds, class labels) as <see cref="long"/>.</summary>
internal static class IntegerColumn
{
    /// <summary>Whether <paramref name="type"/> is a signed or unsigned integer of 8 to 64 bits.</summary>
    public static bool IsInteger(DataViewType type)
        => type == NumberDataViewType.Int32 || type == NumberDataViewType.Int64 || type == NumberDataViewType.UInt32
        || type == NumberDataViewType.UInt64 || type == NumberDataViewType.Int16 || type == NumberDataViewType.UInt16
        || type == NumberDataViewType.Byte || type == NumberDataViewType.SByte;

    /// <summary>
    /// A reader of <paramref name="column"/>'s value at <paramref name="row"/>'s current position. UInt64
    /// values keep their bits (values above <see cref="long.MaxValue"/> read as negative), so distinct seeds
    /// stay distinct and out-of-range labels still fail the caller's range check.
    /// </summary>
    public static Func<long> CreateReader(DataViewRow row, DataViewSchema.Column column)
    {
        var type = column.Type;
        if (type == NumberDataViewType.Int32) return Reader<int>(row, column, v => v);
        if (type == NumberDataViewType.Int64) return Reader<long>(row, column, v => v);
        if (type == NumberDataViewType.UInt32) return Reader<uint>(row, column, v => v);
        if (type == NumberDataViewType.UInt64) return Reader<ulong>(row, column, v => unchecked((long)v));
        if (type == NumberDataViewType.Int16) return Reader<short>(row, column, v => v);
        if (type == NumberDataViewType.UInt16) return Reader<ushort>(row, column, v => v);
        if (type == NumberDataViewType.Byte) return Reader<byte>(row, column, v => v);
        if (type == NumberDataViewType.SByte) return Reader<sbyte>(row, column, v => v);
        throw new ArgumentException($"Column '{column.Name}' is {type}, not an integer type.", nameof(column));
    }

    /// <summary>A reader that converts each value of a column of <typeparamref name="T"/> with <paramref name="convert"/>.</summary>
    public static Func<long> Reader<T>(DataViewRow row, DataViewSchema.Column column, Func<T, long> convert)
    {
        var getter = row.GetGetter<T>(column);
        T value = default!;
        return () => { getter(ref value); return convert(value); };
    }
}
