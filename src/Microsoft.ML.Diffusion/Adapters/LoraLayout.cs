namespace Microsoft.ML.Diffusion.Adapters;

/// <summary>The ways LoRA files name their tensors.</summary>
internal enum LoraLayout
{
    /// <summary>
    /// diffusers' attention processors and LoRA-compatible layers: '<c>[unet.]…attn1.processor.to_q_lora.down.weight</c>',
    /// '<c>…to_q.lora.up.weight</c>', text encoder '<c>text_encoder.…q_proj.lora_linear_layer.down.weight</c>' (or the older
    /// '<c>text_encoder.…self_attn.to_q_lora.down.weight</c>').
    /// </summary>
    Diffusers,

    /// <summary>PEFT: '<c>[unet.|text_encoder.][base_model.model.]&lt;module&gt;.lora_A[.&lt;adapter&gt;].weight</c>' (down) and lora_B (up).</summary>
    Peft,

    /// <summary>Kohya / A1111: '<c>lora_unet_&lt;module with _&gt;.lora_down.weight</c>', '<c>.lora_up.weight</c>', '<c>.alpha</c>'; text encoder '<c>lora_te_…</c>'.</summary>
    Kohya,
}

/// <summary>Which network of a Stable Diffusion model a LoRA layer belongs to.</summary>
internal enum LoraComponent
{
    /// <summary>Not said by the file (diffusers' and PEFT's unprefixed names): the UNet if it has the module, else the text encoder.</summary>
    Unspecified,
    UNet,
    TextEncoder,
}
