using System.Globalization;
using System.Reflection.Emit;

namespace Microsoft.ML.Diffusion.Cli;

/// <summary>
/// An exception's message as a user of the tool reads it. ArgumentException's Message adds "(Parameter 'name')" for
/// programmers, and ArgumentOutOfRangeException's the value on a new line; here an argument error shows the text its
/// thrower wrote, followed by the value when there is one.
/// </summary>
internal static class ErrorText
{
    // Exception's own Message getter, called without virtual dispatch (as base.Message would be): the text given to the
    // constructor, before ArgumentException's override appends the parameter name.
    private static readonly Func<Exception, string> ThrownMessage = CreateThrownMessage();

    public static string Of(Exception e) => e switch
    {
        ArgumentOutOfRangeException { ActualValue: { } value } a => string.Create(CultureInfo.InvariantCulture, $"{ThrownMessage(a)} Actual value was {value}."),
        ArgumentException a => ThrownMessage(a),
        _ => e.Message,
    };

    private static Func<Exception, string> CreateThrownMessage()
    {
        var getter = typeof(Exception).GetProperty(nameof(Exception.Message))!.GetMethod!;
        var method = new DynamicMethod(nameof(ThrownMessage), typeof(string), [typeof(Exception)], typeof(ErrorText).Module);
        var il = method.GetILGenerator();
        il.Emit(OpCodes.Ldarg_0);
        il.Emit(OpCodes.Call, getter);   // call, not callvirt
        il.Emit(OpCodes.Ret);
        return method.CreateDelegate<Func<Exception, string>>();
    }
}
