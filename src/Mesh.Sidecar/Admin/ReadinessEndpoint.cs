using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Mesh.Sidecar.Admin;

/// <summary>
/// <c>/healthz/ready</c> on the admin port: 200 when every readiness check (tag <c>ready</c>: Mesh.Client's <c>mesh</c>
/// check — synced, certified, inbound policy received — and the <c>app</c> check) is healthy; else 503. The body lists
/// each check with its state, so a failing probe says what is missing.
/// </summary>
internal sealed class ReadinessEndpoint(HealthCheckService health)
{
    public const string Path = "/healthz/ready";
    public const string ReadyTag = "ready";

    public async Task InvokeAsync(HttpContext context)
    {
        var report = await health.CheckHealthAsync(r => r.Tags.Contains(ReadyTag), context.RequestAborted).ConfigureAwait(false);
        var body = new StringBuilder();
        foreach (var (name, entry) in report.Entries.OrderBy(e => e.Key, StringComparer.Ordinal))
        {
            body.Append(name).Append(": ").Append(entry.Status).Append(" - ").Append(entry.Description).Append('\n');
        }

        context.Response.StatusCode = report.Status == HealthStatus.Healthy ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable;
        context.Response.ContentType = "text/plain; charset=utf-8";
        context.Response.Headers.CacheControl = "no-store";
        await context.Response.WriteAsync(body.ToString(), context.RequestAborted).ConfigureAwait(false);
    }
}
