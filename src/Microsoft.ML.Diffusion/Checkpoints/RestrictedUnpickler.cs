using System.Buffers.Binary;
using System.Numerics;
using System.Text;
using static TorchSharp.torch;

namespace Microsoft.ML.Diffusion.Checkpoints;

/// <summary>A module.name a pickle refers to (its GLOBAL), held as a name: nothing is imported or called.</summary>
internal sealed record PickleGlobal(string Module, string Name)
{
    public override string ToString() => $"{Module}.{Name}";
}

/// <summary>What a tolerated data-only call (a numpy scalar, a dtype, a byte string) would have built: only recorded.</summary>
internal sealed record PickleObject(PickleGlobal Callable, object?[] Arguments)
{
    public override string ToString() => $"an object made by {Callable}";
}

/// <summary>A torch storage a checkpoint refers to: the zip entry <c>data/{Key}</c> holding <paramref name="Elements"/> values.</summary>
internal sealed record PickledStorage(string Key, ScalarType DType, long Elements);

/// <summary>A tensor as <c>torch._utils._rebuild_tensor_v2</c> describes it: a view of a storage. Its bytes stay in the file.</summary>
internal sealed record PickledTensor(PickledStorage Storage, long Offset, long[] Shape, long[] Stride);

/// <summary>The key that stands for Python's None in a pickled dict (a .NET dictionary takes no null key).</summary>
internal sealed class PickleNone
{
    public static readonly PickleNone Key = new();
    public override string ToString() => "None";
}

/// <summary>
/// A pickle reader for the state dicts in PyTorch's zip checkpoints that never runs code from the file. Python's
/// unpickler imports and calls whatever a GLOBAL and REDUCE name; this one builds only plain values (None, bools,
/// numbers, strings, bytes, tuples, lists, dicts, sets) and what these globals make:
/// <list type="bullet">
/// <item><c>collections.OrderedDict</c> → a dict;</item>
/// <item><c>torch._utils._rebuild_tensor_v2</c> → a <see cref="PickledTensor"/> (bytes are read later, on demand);</item>
/// <item><c>torch.*Storage</c> types → a storage's dtype in a persistent id;</item>
/// <item><c>builtins</c> (or Python 2's <c>__builtin__</c>) <c>set</c>, <c>dict</c>, <c>list</c>, <c>tuple</c>.</item>
/// </list>
/// Any other global is kept as an inert name (<see cref="PickleGlobal"/>), which is harmless as a value (Stable
/// Diffusion checkpoints key their callbacks' state by the class
/// <c>pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint</c>). Calling one is refused, naming it, except the
/// data-only constructors numpy and Python 2 use for scalars and byte strings (<see cref="DataOnlyCalls"/>), whose
/// calls are recorded as <see cref="PickleObject"/>s and never made.
/// </summary>
internal sealed class RestrictedUnpickler
{
    /// <summary>Calls recorded rather than refused: numpy scalars and dtypes, and protocol 2's byte strings.</summary>
    public static readonly IReadOnlySet<string> DataOnlyCalls = new HashSet<string>(StringComparer.Ordinal)
    {
        "numpy.core.multiarray.scalar", "numpy.dtype", "_codecs.encode",
    };

    private static readonly Dictionary<string, ScalarType> StorageTypes = new(StringComparer.Ordinal)
    {
        ["FloatStorage"] = ScalarType.Float32, ["DoubleStorage"] = ScalarType.Float64, ["HalfStorage"] = ScalarType.Float16,
        ["BFloat16Storage"] = ScalarType.BFloat16, ["LongStorage"] = ScalarType.Int64, ["IntStorage"] = ScalarType.Int32,
        ["ShortStorage"] = ScalarType.Int16, ["CharStorage"] = ScalarType.Int8, ["ByteStorage"] = ScalarType.Byte,
        ["BoolStorage"] = ScalarType.Bool,
    };

    private static readonly object Mark = new();

    private readonly byte[] _data;
    private readonly string _source;
    private int _position;
    private readonly List<object?> _stack = [];
    private readonly List<int> _marks = [];
    private readonly Dictionary<long, object?> _memo = [];

    private RestrictedUnpickler(byte[] data, string source)
    {
        _data = data;
        _source = source;
    }

    /// <summary>The object the pickle builds; <paramref name="source"/> names the file in errors.</summary>
    public static object? Load(byte[] pickle, string source) => new RestrictedUnpickler(pickle, source).Run();

    private object? Run()
    {
        while (true)
        {
            byte op = Byte();
            switch (op)
            {
                case 0x80: Byte(); break;                                     // PROTO
                case 0x95: Bytes(8); break;                                   // FRAME: a length hint only
                case 0x2e: return _stack.Count == 1 ? _stack[0] : throw Corrupt("its pickle ends with a stack of other than one value");   // STOP
                case 0x28: _marks.Add(_stack.Count); _stack.Add(Mark); break; // MARK
                case 0x30: Pop(); break;                                      // POP
                case 0x31: PopMark(); break;                                  // POP_MARK
                case 0x32: Push(Peek()); break;                               // DUP
                case 0x4e: Push(null); break;                                 // NONE
                case 0x88: Push(true); break;                                 // NEWTRUE
                case 0x89: Push(false); break;                                // NEWFALSE
                case 0x4a: Push((long)BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))); break;   // BININT
                case 0x4b: Push((long)Byte()); break;                                             // BININT1
                case 0x4d: Push((long)BinaryPrimitives.ReadUInt16LittleEndian(Bytes(2))); break;  // BININT2
                case 0x8a: Push(Long(Byte())); break;                                             // LONG1
                case 0x8b: Push(Long(Length(BinaryPrimitives.ReadInt32LittleEndian(Bytes(4))))); break;   // LONG4
                case 0x47: Push(BinaryPrimitives.ReadDoubleBigEndian(Bytes(8))); break;           // BINFLOAT
                case 0x58: Push(Encoding.UTF8.GetString(Bytes(Length(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))))); break;   // BINUNICODE
                case 0x8c: Push(Encoding.UTF8.GetString(Bytes(Byte()))); break;                   // SHORT_BINUNICODE
                case 0x8d: Push(Encoding.UTF8.GetString(Bytes(Length(BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8)))))); break;   // BINUNICODE8
                case 0x54: Push(Encoding.Latin1.GetString(Bytes(Length(BinaryPrimitives.ReadInt32LittleEndian(Bytes(4)))))); break;  // BINSTRING
                case 0x55: Push(Encoding.Latin1.GetString(Bytes(Byte()))); break;                 // SHORT_BINSTRING
                case 0x42: Push(Bytes(Length(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))).ToArray()); break;   // BINBYTES
                case 0x43: Push(Bytes(Byte()).ToArray()); break;                                  // SHORT_BINBYTES
                case 0x8e: Push(Bytes(Length(BinaryPrimitives.ReadUInt64LittleEndian(Bytes(8)))).ToArray()); break;   // BINBYTES8
                case 0x29: Push(Array.Empty<object?>()); break;               // EMPTY_TUPLE
                case 0x85: Push(Take(1)); break;                              // TUPLE1
                case 0x86: Push(Take(2)); break;                              // TUPLE2
                case 0x87: Push(Take(3)); break;                              // TUPLE3
                case 0x74: Push(PopMark()); break;                            // TUPLE
                case 0x5d: Push(new List<object?>()); break;                  // EMPTY_LIST
                case 0x6c: Push(new List<object?>(PopMark())); break;         // LIST
                case 0x61: Append(Pop()); break;                              // APPEND
                case 0x65: foreach (var item in PopMark()) Append(item); break;   // APPENDS
                case 0x7d: Push(new OrderedDictionary<object, object?>()); break;  // EMPTY_DICT
                case 0x64: Push(Dict(PopMark())); break;                      // DICT
                case 0x73: { var value = Pop(); var key = Pop(); SetItem(key, value); break; }   // SETITEM
                case 0x75: { var items = PopMark(); for (int i = 0; i + 1 < items.Length; i += 2) SetItem(items[i], items[i + 1]); break; }   // SETITEMS
                case 0x8f: Push(new List<object?>()); break;                  // EMPTY_SET (a set's items, in a list)
                case 0x90: { var items = PopMark(); Sequence(Peek(), "ADDITEMS").AddRange(items); break; }   // ADDITEMS
                case 0x91: Push(new List<object?>(PopMark())); break;         // FROZENSET
                case 0x71: _memo[Byte()] = Peek(); break;                     // BINPUT
                case 0x72: _memo[BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4))] = Peek(); break;   // LONG_BINPUT
                case 0x94: _memo[_memo.Count] = Peek(); break;                // MEMOIZE
                case 0x68: Push(Memo(Byte())); break;                         // BINGET
                case 0x6a: Push(Memo(BinaryPrimitives.ReadUInt32LittleEndian(Bytes(4)))); break;   // LONG_BINGET
                case 0x63: Push(Global(Line(), Line())); break;               // GLOBAL
                case 0x93: { var name = Pop(); var module = Pop(); Push(Global(Text(module), Text(name))); break; }   // STACK_GLOBAL
                case 0x51: Push(PersistentLoad(Pop())); break;                // BINPERSID
                case 0x52: { var args = Tuple(Pop()); Push(Call(Pop(), args)); break; }   // REDUCE
                case 0x81: { var args = Tuple(Pop()); Push(Call(Pop(), args)); break; }   // NEWOBJ
                case 0x92: { Pop(); var args = Tuple(Pop()); Push(Call(Pop(), args)); break; }   // NEWOBJ_EX (keyword arguments dropped: only refused or recorded calls get here)
                case 0x62: Build(Pop(), Peek()); break;                       // BUILD
                default:
                    throw Corrupt($"its pickle has opcode 0x{op:x2} at byte {_position - 1}, which a PyTorch state dict does not use");
            }
        }
    }

    // The one place a pickle asks for something to be made. Only the allow-list builds anything.
    private object? Call(object? callable, object?[] args)
    {
        if (callable is not PickleGlobal global)
            throw Corrupt($"its pickle calls {Describe(callable)}, which is not a function");
        switch (global.Module, global.Name)
        {
            case ("collections", "OrderedDict"):
                var dict = new OrderedDictionary<object, object?>();
                if (args.Length > 0 && args[0] is IEnumerable<object?> pairs)
                {
                    foreach (var pair in pairs)
                    {
                        if (pair is object?[] { Length: 2 } kv) dict[Key(kv[0])] = kv[1];
                        else throw Corrupt("its pickle builds an OrderedDict from something other than pairs");
                    }
                }
                return dict;
            case ("torch._utils", "_rebuild_tensor_v2"):
                return RebuildTensor(args);
            case ("builtins", "set" or "list" or "tuple"):
                var items = args.Length == 0 ? [] : args[0] is IEnumerable<object?> sequence ? sequence.ToList() : throw Corrupt($"its pickle calls {global} on {Describe(args[0])}");
                return global.Name == "tuple" ? items.ToArray() : items;
            case ("builtins", "dict"):
                var copy = new OrderedDictionary<object, object?>();
                if (args.Length > 0 && args[0] is OrderedDictionary<object, object?> from) foreach (var (k, v) in from) copy[k] = v;
                return copy;
        }
        if (DataOnlyCalls.Contains(global.ToString())) return new PickleObject(global, args);
        throw new CheckpointFormatException(
            $"{_source} asks to call {global} while it is unpickled. A checkpoint of weights has no reason to, and code in a checkpoint is never run " +
            "here: it was refused and nothing in it was executed. Load only files from sources you trust; a safetensors file cannot carry code.");
    }

    // Protocol 2 names Python 3's builtins by their Python 2 module, as Python's own unpickler maps back.
    private static PickleGlobal Global(string module, string name) => new(module == "__builtin__" ? "builtins" : module, name);

    private PickledTensor RebuildTensor(object?[] args)
    {
        // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
        if (args.Length < 4 || args[0] is not PickledStorage storage)
            throw Corrupt("its pickle calls torch._utils._rebuild_tensor_v2 without a storage");
        long offset = Integer(args[1]);
        long[] shape = [.. Tuple(args[2]).Select(Integer)];
        long[] stride = [.. Tuple(args[3]).Select(Integer)];
        if (shape.Length != stride.Length || offset < 0 || shape.Any(d => d < 0) || stride.Any(s => s < 0))
            throw Corrupt($"its pickle describes a tensor of shape [{string.Join(", ", shape)}], stride [{string.Join(", ", stride)}] and offset {offset}, which is no tensor");
        return new PickledTensor(storage, offset, shape, stride);
    }

    // torch.save's persistent id: ('storage', storage type, key, location, number of elements).
    private PickledStorage PersistentLoad(object? pid)
    {
        if (pid is not object?[] { Length: >= 5 } id || id[0] is not "storage")
            throw Corrupt($"its pickle has the persistent id {Describe(pid)}, where torch.save writes ('storage', type, key, location, size)");
        if (id[1] is not PickleGlobal { Module: "torch" } type || !StorageTypes.TryGetValue(type.Name, out var dtype))
            throw Corrupt($"its pickle refers to a storage of type {Describe(id[1])}, which this library cannot read");
        return new PickledStorage(Text(id[2]), dtype, Integer(id[4]));
    }

    // BUILD sets an object's state. Dicts keep theirs (an OrderedDict's _metadata); recorded objects stay as they are.
    private void Build(object? state, object? target)
    {
        switch (target)
        {
            case OrderedDictionary<object, object?> or PickleObject or PickleGlobal or PickledTensor: return;
            default: throw Corrupt($"its pickle sets the state of {Describe(target)} with {Describe(state)}");
        }
    }

    private void Append(object? item) => Sequence(Peek(), "APPEND").Add(item);

    private List<object?> Sequence(object? value, string op) =>
        value as List<object?> ?? throw Corrupt($"its pickle applies {op} to {Describe(value)}");

    private void SetItem(object? key, object? value)
    {
        if (Peek() is not OrderedDictionary<object, object?> dict) throw Corrupt($"its pickle sets an item of {Describe(Peek())}");
        dict[Key(key)] = value;
    }

    private OrderedDictionary<object, object?> Dict(object?[] items)
    {
        var dict = new OrderedDictionary<object, object?>();
        for (int i = 0; i + 1 < items.Length; i += 2) dict[Key(items[i])] = items[i + 1];
        return dict;
    }

    private static object Key(object? key) => key ?? PickleNone.Key;

    private object? Memo(long index) => _memo.TryGetValue(index, out var value) ? value : throw Corrupt($"its pickle refers to memo {index}, which it never stored");

    private object?[] Take(int count)
    {
        if (_stack.Count - (_marks.Count > 0 ? _marks[^1] + 1 : 0) < count) throw Corrupt("its pickle's stack runs out");
        var items = _stack.GetRange(_stack.Count - count, count).ToArray();
        _stack.RemoveRange(_stack.Count - count, count);
        return items;
    }

    private object?[] PopMark()
    {
        if (_marks.Count == 0) throw Corrupt("its pickle closes a MARK it never opened");
        int mark = _marks[^1];
        _marks.RemoveAt(_marks.Count - 1);
        var items = _stack.GetRange(mark + 1, _stack.Count - mark - 1).ToArray();
        _stack.RemoveRange(mark, _stack.Count - mark);
        return items;
    }

    private void Push(object? value) => _stack.Add(value);

    private object? Pop()
    {
        var value = Peek();
        _stack.RemoveAt(_stack.Count - 1);
        return value;
    }

    private object? Peek()
    {
        if (_stack.Count == 0 || (_marks.Count > 0 && _marks[^1] == _stack.Count - 1)) throw Corrupt("its pickle's stack runs out");
        return _stack[^1];
    }

    private byte Byte() => _position < _data.Length ? _data[_position++] : throw Corrupt("its pickle ends early");

    private ReadOnlySpan<byte> Bytes(int count)
    {
        if (count > _data.Length - _position) throw Corrupt("its pickle ends early");
        _position += count;
        return _data.AsSpan(_position - count, count);
    }

    private int Length(long length) => length >= 0 && length <= _data.Length - _position ? (int)length : throw Corrupt("its pickle ends early");

    private int Length(ulong length) => length <= (ulong)(_data.Length - _position) ? (int)length : throw Corrupt("its pickle ends early");

    private string Line()
    {
        int end = Array.IndexOf(_data, (byte)'\n', _position);
        if (end < 0) throw Corrupt("its pickle ends early");
        string text = Encoding.UTF8.GetString(_data, _position, end - _position);
        _position = end + 1;
        return text;
    }

    private object Long(int count)
    {
        var value = new BigInteger(Bytes(count), isUnsigned: false, isBigEndian: false);
        return value >= long.MinValue && value <= long.MaxValue ? (long)value : value;
    }

    private long Integer(object? value) => value switch
    {
        long n => n,
        bool b => b ? 1 : 0,
        _ => throw Corrupt($"its pickle has {Describe(value)} where a whole number belongs"),
    };

    private string Text(object? value) => value as string ?? throw Corrupt($"its pickle has {Describe(value)} where a string belongs");

    private object?[] Tuple(object? value) => value as object?[] ?? throw Corrupt($"its pickle has {Describe(value)} where a tuple belongs");

    /// <summary>A short description of a pickled value for error messages.</summary>
    public static string Describe(object? value) => value switch
    {
        null => "None",
        PickleGlobal g => g.ToString(),
        PickleObject o => o.ToString(),
        string s => $"the string '{(s.Length > 40 ? s[..40] + "…" : s)}'",
        object?[] t => $"a tuple of {t.Length}",
        List<object?> l => $"a list of {l.Count}",
        OrderedDictionary<object, object?> d => $"a dict of {d.Count}",
        PickledTensor => "a tensor",
        _ => $"a {value.GetType().Name}",
    };

    private CheckpointFormatException Corrupt(string problem) => new($"{_source} is not a PyTorch checkpoint this library can read: {problem}.");
}
