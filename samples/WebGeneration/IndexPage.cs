using System.Net;
using Microsoft.ML.Diffusion.Models;
using Microsoft.ML.Diffusion.Samplers;

namespace Microsoft.ML.Diffusion.Samples;

/// <summary>The one page: a form, a progress bar fed by an EventSource on <c>/events</c>, and the image. No external assets.</summary>
internal static class IndexPage
{
    public static string Html(string modelName, DiffusionModel model, int maxSteps)
    {
        string samplers = string.Concat(DiffusionSamplers.Names.Select(n =>
            $"<option{(n == SamplerName.DpmSolverPlusPlus.Value ? " selected" : "")}>{WebUtility.HtmlEncode(n)}</option>"));
        string shape = string.Join("×", model.ImageShape);
        // A prompt model takes text (guided by default, as Stable Diffusion is used); a class-conditional one a label.
        string condition = model.TakesPrompts
            ? "<label>prompt <input name=prompt size=50></label><label>negative prompt <input name=negativePrompt size=50></label>"
            : model.Network.IsConditional ? "<label>condition (class) <input name=condition type=number min=0></label>"
            : "";
        string guidance = model.TakesPrompts ? "7.5" : "1";
        return $$"""
            <!doctype html>
            <html lang=en><head><meta charset=utf-8><title>Diffusion generation</title><link rel=icon href="data:,">
            <style>
              body { font-family: sans-serif; max-width: 40em; margin: 2em auto; }
              label { display: block; margin: .3em 0; }
              #image { image-rendering: pixelated; width: 256px; border: 1px solid #ccc; display: none; }
              #message { color: #a00; }
            </style></head>
            <body>
            <h1>Diffusion generation</h1>
            <p>Model <code>{{WebUtility.HtmlEncode(modelName)}}</code>, images {{shape}}.</p>
            <form id=form>
              <label>seed <input name=seed type=number value=1></label>
              <label>steps <input name=steps type=number min=1 max={{maxSteps}} value={{Math.Min(WebGenerationApp.DefaultSteps, maxSteps)}}></label>
              <label>sampler <select name=sampler>{{samplers}}</select></label>
              <label>guidance <input name=guidance type=number step=0.1 value={{guidance}}></label>
              {{condition}}
              <button>Generate</button>
            </form>
            <p><progress id=progress max=1 value=0></progress> <span id=status></span></p>
            <p id=message></p>
            <img id=image alt="generated image">
            <script>
            const form = document.getElementById('form'), bar = document.getElementById('progress'),
                  status = document.getElementById('status'), message = document.getElementById('message'),
                  image = document.getElementById('image');
            let source = null;
            form.addEventListener('submit', e => {
              e.preventDefault();
              if (source) source.close();
              message.textContent = ''; bar.value = 0; status.textContent = 'queued';
              const query = new URLSearchParams([...new FormData(form)].filter(([, v]) => v !== '')).toString();
              source = new EventSource('/events?' + query);
              source.addEventListener('progress', m => {
                const p = JSON.parse(m.data);
                bar.max = p.total; bar.value = p.done; status.textContent = p.done + ' / ' + p.total;
              });
              source.addEventListener('done', m => {
                source.close();
                image.src = JSON.parse(m.data).image; image.style.display = 'block'; status.textContent = 'done';
              });
              source.addEventListener('failed', m => { source.close(); message.textContent = JSON.parse(m.data).error; });
              source.onerror = async () => {
                if (status.textContent === 'done') return;
                const refused = source.readyState === EventSource.CLOSED;
                source.close(); status.textContent = '';
                // A refused request closes the EventSource without showing the answer: ask once more for its message.
                message.textContent = refused ? (await (await fetch('/events?' + query)).json()).error : 'The connection was lost.';
              };
            });
            </script>
            </body></html>
            """;
    }
}
