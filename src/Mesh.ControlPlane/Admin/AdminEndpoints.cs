using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using Mesh.ControlPlane.Model;
using Mesh.ControlPlane.Registry;
using Mesh.ControlPlane.Security;
using Mesh.ControlPlane.Sources;
using Mesh.ControlPlane.Xds;

namespace Mesh.ControlPlane.Admin;

internal sealed record ConfigDump(
    string Version,
    IReadOnlyList<ServiceDump> Services,
    IReadOnlyList<ClientInfo> Clients,
    IReadOnlyList<ConfigErrorDump> ConfigErrors);

internal sealed record ServiceDump(string Host, string Namespace, string Name, IReadOnlyList<PortDump> Ports, string LoadBalancer, IReadOnlyList<EndpointDump> Endpoints);

internal sealed record PortDump(uint Number, string Name, string Protocol, uint? TargetPort);

internal sealed record EndpointDump(
    uint ServicePort,
    string Address,
    uint Port,
    IReadOnlyDictionary<string, string> Labels,
    string ServiceAccount,
    string Locality,
    uint Weight,
    string Source,
    string? LeaseId,
    DateTimeOffset? LeaseExpires);

internal sealed record TokenRequest(string? Namespace, string? ServiceAccount, string? Ttl);

internal sealed record TokenResponse(string Token, DateTimeOffset Expires);

internal sealed record TokenError(string Error);

internal sealed record ConfigErrorDump(string File, int Line, string Message, string Severity);

/// <summary>The admin HTTP API: readiness and debug dumps.</summary>
internal static class AdminEndpoints
{
    public static readonly JsonSerializerOptions JsonOptions = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    };

    /// <summary>Maps the admin API so it answers only on the admin listener.</summary>
    public static void Map(IEndpointRouteBuilder endpoints, Func<int> adminPort)
    {
        var admin = endpoints.MapGroup(string.Empty).AddEndpointFilter(async (context, next) =>
            context.HttpContext.Connection.LocalPort == adminPort() ? await next(context) : Results.NotFound());
        MapRoutes(admin);

        // The trust bundle is public: served on the admin port and on the TLS port, never on plaintext xDS.
        endpoints.MapGet("/ca/bundle.pem", (CertificateAuthority ca) => Results.Text(ca.BundlePem, "application/x-pem-file"))
            .AddEndpointFilter(async (context, next) =>
                context.HttpContext.Connection.LocalPort == adminPort() || context.HttpContext.Request.IsHttps ? await next(context) : Results.NotFound());
    }

    private static void MapRoutes(IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/healthz/ready", (ConfigStore store, XdsPublisher publisher) =>
            publisher.HasValidSnapshot ? Results.Text("ready") : Results.Text(NotReadyText(store), statusCode: StatusCodes.Status503ServiceUnavailable));
        endpoints.MapGet("/debug/config_dump", (ConfigStore store, XdsPublisher publisher, AdsService ads, WorkloadLeaseRegistry registry) =>
            Results.Json(Dump(store, publisher, ads, registry), JsonOptions));
        endpoints.MapGet("/debug/clients", (AdsService ads) => Results.Json(ads.Clients(), JsonOptions));
        endpoints.MapPost("/tokens", MintToken);
    }

    private static async Task<IResult> MintToken(HttpContext context, BootstrapTokens tokens)
    {
        TokenRequest? request;
        try
        {
            request = await context.Request.ReadFromJsonAsync<TokenRequest>(JsonOptions, context.RequestAborted);
        }
        catch (JsonException ex)
        {
            return Results.BadRequest(new TokenError($"body must be JSON like {{\"namespace\":\"default\",\"serviceAccount\":\"orders\",\"ttl\":\"01:00:00\"}} ({ex.Message})"));
        }
        catch (InvalidOperationException ex)
        {
            return Results.BadRequest(new TokenError($"body must be application/json ({ex.Message})"));
        }

        var ttl = BootstrapTokens.DefaultTtl;
        if (request?.Ttl is not null && !TimeSpan.TryParse(request.Ttl, CultureInfo.InvariantCulture, out ttl))
        {
            return Results.BadRequest(new TokenError($"ttl '{request.Ttl}' must be a TimeSpan like 01:00:00 (at most 24:00:00)"));
        }

        var error = BootstrapTokens.ValidateRequest(request?.Namespace, request?.ServiceAccount, ttl);
        if (error is not null)
        {
            return Results.BadRequest(new TokenError(error));
        }

        var (token, expires) = tokens.Mint(request!.Namespace!, request.ServiceAccount!, ttl);
        return Results.Json(new TokenResponse(token, expires), JsonOptions);
    }

    /// <summary>Why the control plane is not ready: no valid config folder yet, with every error's file:line.</summary>
    private static string NotReadyText(ConfigStore store)
    {
        var errors = store.Errors.Where(e => !e.IsWarning).ToList();
        return store.HasValidConfig || errors.Count == 0
            ? "not ready: the config folder has not been loaded yet\n"
            : $"not ready: the config folder is invalid; ADS is not served until it is fixed ({errors.Count} errors):\n{string.Join("\n", errors)}\n";
    }

    public static ConfigDump Dump(ConfigStore store, XdsPublisher publisher, AdsService ads, WorkloadLeaseRegistry registry)
    {
        var snapshot = publisher.Current;
        var services = snapshot.Services.Select(s => new ServiceDump(
            s.Host,
            s.Entry.Namespace,
            s.Entry.Name,
            [.. s.Entry.Ports.Select(p => new PortDump(p.Number, p.Name, p.Protocol, p.TargetPort))],
            s.LoadBalancer == LoadBalancerKind.LeastRequest ? "LEAST_REQUEST" : "ROUND_ROBIN",
            [.. s.Endpoints.Select(e => new EndpointDump(
                e.ServicePort, e.Address, e.Port, e.Workload.Labels, e.Workload.ServiceAccount, e.Workload.Locality,
                e.Workload.Weight == 0 ? 1 : e.Workload.Weight, e.Workload.Source, e.Workload.LeaseId,
                e.Workload.LeaseId is null ? null : registry.Find(e.Workload.LeaseId)?.ExpiresAt))])).ToList();
        var errors = store.Errors.Select(e => new ConfigErrorDump(e.File, e.Line, e.Message, e.IsWarning ? "warning" : "error")).ToList();
        return new ConfigDump(snapshot.VersionInfo, services, ads.Clients(), errors);
    }
}
