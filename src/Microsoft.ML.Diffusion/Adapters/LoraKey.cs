using System.Text.RegularExpressions;

namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>What a tensor of a LoRA file is to its layer.</summary>
internal enum LoraRole
{
    Down,
    Up,
    Alpha,
}

/// <summary>
/// A LoRA file's tensor name taken apart: its layout, the network and module it updates, and its role. The module is
/// given as the file names it; Kohya's underscored names are matched against the model's own names later
/// (<see cref="LoraTargets"/>), since underscores cannot be turned back into dots by rule.
/// </summary>
internal readonly record struct LoraKey(LoraLayout Layout, LoraComponent Component, string Module, LoraRole Role)
{
    // Kohya: one dotless name per layer, then lora_down.weight / lora_up.weight / alpha.
    private static readonly Regex Kohya = new(@"^lora_(unet|te|te1|te2)_([^.]+)\.(lora_down\.weight|lora_up\.weight|alpha)$", RegexOptions.CultureInvariant);

    // diffusers' attention processors: '<attention>.processor.to_q_lora.down.weight' (to_out_lora is to_out.0).
    private static readonly Regex Processor = new(@"^(?:(unet|text_encoder)\.)?(.+)\.processor\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$", RegexOptions.CultureInvariant);

    // The text encoder's older form (monkey-patched onto CLIPAttention): '<self_attn>.to_q_lora.down.weight' is q_proj's.
    private static readonly Regex OldText = new(@"^text_encoder\.(.+)\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$", RegexOptions.CultureInvariant);

    // diffusers' LoRA-compatible layers ('<module>.lora.down.weight') and the text encoder's patched projections
    // ('<module>.lora_linear_layer.down.weight').
    private static readonly Regex Compatible = new(@"^(?:(unet|text_encoder)\.)?(.+)\.(?:lora|lora_linear_layer)\.(down|up)\.weight$", RegexOptions.CultureInvariant);

    // PEFT: '<module>.lora_A[.<adapter name>].weight', under 'base_model.model.' when saved from a PEFT model.
    private static readonly Regex Peft = new(@"^(?:(unet|text_encoder)\.)?(?:base_model\.model\.)?(.+)\.lora_(A|B)(?:\.[A-Za-z0-9_\-]+)?\.weight$", RegexOptions.CultureInvariant);

    /// <summary>The key's meaning, or null when it is in none of the layouts.</summary>
    public static LoraKey? Parse(string name)
    {
        var m = Kohya.Match(name);
        if (m.Success)
        {
            var component = m.Groups[1].Value switch { "unet" => LoraComponent.UNet, "te" => LoraComponent.TextEncoder, _ => (LoraComponent?)null };
            if (component is null) return null;   // SDXL's two text encoders: not a Stable Diffusion 1.x/2.x file
            var role = m.Groups[3].Value switch { "lora_down.weight" => LoraRole.Down, "lora_up.weight" => LoraRole.Up, _ => LoraRole.Alpha };
            return new LoraKey(LoraLayout.Kohya, component.Value, m.Groups[2].Value, role);
        }
        m = Processor.Match(name);
        if (m.Success)
        {
            string projection = m.Groups[3].Value == "to_out" ? "to_out.0" : m.Groups[3].Value;
            return new LoraKey(LoraLayout.Diffusers, ComponentOf(m.Groups[1].Value), $"{m.Groups[2].Value}.{projection}", RoleOf(m.Groups[4].Value));
        }
        m = OldText.Match(name);
        if (m.Success)
        {
            string projection = m.Groups[2].Value switch { "to_q" => "q_proj", "to_k" => "k_proj", "to_v" => "v_proj", _ => "out_proj" };
            return new LoraKey(LoraLayout.Diffusers, LoraComponent.TextEncoder, $"{m.Groups[1].Value}.{projection}", RoleOf(m.Groups[3].Value));
        }
        m = Compatible.Match(name);
        if (m.Success) return new LoraKey(LoraLayout.Diffusers, ComponentOf(m.Groups[1].Value), m.Groups[2].Value, RoleOf(m.Groups[3].Value));
        m = Peft.Match(name);
        if (m.Success) return new LoraKey(LoraLayout.Peft, ComponentOf(m.Groups[1].Value), m.Groups[2].Value, m.Groups[3].Value == "A" ? LoraRole.Down : LoraRole.Up);
        return null;
    }

    private static LoraComponent ComponentOf(string prefix) => prefix switch
    {
        "unet" => LoraComponent.UNet,
        "text_encoder" => LoraComponent.TextEncoder,
        _ => LoraComponent.Unspecified,
    };

    private static LoraRole RoleOf(string role) => role == "down" ? LoraRole.Down : LoraRole.Up;
}
