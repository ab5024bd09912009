using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Mesh.ControlPlane.Sources;
using Microsoft.AspNetCore.Http.Features;

namespace Mesh.ControlPlane.Admission;

/// <summary>
/// The validating admission webhook (<c>POST /validate</c>, AdmissionReview admission.k8s.io/v1): the mesh's kinds are
/// checked by the same per-object rules as the config folder, so <c>kubectl apply</c> of a bad VirtualService is refused
/// with the folder's field-path message. DELETE and kinds the mesh does not read are always allowed; a request that is not
/// an AdmissionReview gets 400, never a crash.
/// </summary>
internal sealed partial class AdmissionWebhook(ILogger<AdmissionWebhook> logger)
{
    public const string Path = "/validate";

    /// <summary>
    /// The largest request read: an AdmissionReview carries the object and, on UPDATE, the old object, each at most
    /// about 1.5 MB in etcd; 6 MiB leaves room for both and the envelope.
    /// </summary>
    public const long MaxRequestBytes = 6 * 1024 * 1024;

    /// <summary>
    /// Reviews read at once: each may hold up to <see cref="MaxRequestBytes"/> of JSON, and the endpoint is reachable by
    /// anything in the cluster, so a flood is bounded (one more is answered 429 at once; the API server applies the
    /// webhook's failure policy, and the control plane still validates every object it reads).
    /// </summary>
    public const int MaxReviewsInFlight = 32;

    private const string ApiVersion = "admission.k8s.io/v1";
    private const string Kind = "AdmissionReview";
    private const int MaxWarnings = 16;

    private static readonly JsonNodeOptions NodeOptions = new() { PropertyNameCaseInsensitive = false };
    private static readonly JsonDocumentOptions DocumentOptions = new() { MaxDepth = 64 };
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    private int _inFlight;

    /// <summary>Maps the endpoint; only connections to <paramref name="webhookPort"/> reach it.</summary>
    public static void Map(IEndpointRouteBuilder endpoints, Func<int> webhookPort)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(webhookPort);
        endpoints.MapPost(Path, (HttpContext context, AdmissionWebhook webhook) => webhook.HandleAsync(context))
            .AddEndpointFilter(async (context, next) =>
                context.HttpContext.Connection.LocalPort == webhookPort() ? await next(context) : Results.NotFound());
    }

    public async Task<IResult> HandleAsync(HttpContext context)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (Interlocked.Increment(ref _inFlight) > MaxReviewsInFlight)
        {
            Interlocked.Decrement(ref _inFlight);
            return Refuse(StatusCodes.Status429TooManyRequests, string.Create(CultureInfo.InvariantCulture, $"{MaxReviewsInFlight} AdmissionReviews are already being read; retry later"));
        }

        try
        {
            return await ReviewBodyAsync(context).ConfigureAwait(false);
        }
        finally
        {
            Interlocked.Decrement(ref _inFlight);
        }
    }

    private async Task<IResult> ReviewBodyAsync(HttpContext context)
    {
        if (context.Request.ContentLength > MaxRequestBytes)
        {
            return Refuse(StatusCodes.Status413PayloadTooLarge, $"AdmissionReview of {context.Request.ContentLength} bytes exceeds the limit of {MaxRequestBytes} bytes");
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = MaxRequestBytes;
        }

        if (context.Request.ContentType is not { } contentType || !contentType.StartsWith("application/json", StringComparison.OrdinalIgnoreCase))
        {
            return Refuse(StatusCodes.Status415UnsupportedMediaType, $"expected Content-Type application/json with an {ApiVersion} {Kind} (got '{context.Request.ContentType}')");
        }

        JsonNode? body;
        try
        {
            body = await JsonNode.ParseAsync(context.Request.Body, NodeOptions, DocumentOptions, context.RequestAborted).ConfigureAwait(false);
        }
        catch (JsonException ex)
        {
            return Refuse(StatusCodes.Status400BadRequest, $"the body is not JSON: {ex.Message}");
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Refuse(StatusCodes.Status413PayloadTooLarge, $"AdmissionReview exceeds the limit of {MaxRequestBytes} bytes");
        }

        if (Read(body, out var review) is { } malformed)
        {
            return Refuse(StatusCodes.Status400BadRequest, malformed);
        }

        var response = Review(review);
        if (!response.Allowed)
        {
            LogDenied(logger, review.Operation, review.Kind, review.Namespace, review.Name, response.Message!);
        }

        return Results.Json(Write(review.Uid, response), statusCode: StatusCodes.Status200OK);
    }

    /// <summary>The decision for one well-formed request.</summary>
    internal static AdmissionDecision Review(AdmissionRequest request)
    {
        // Removing an object never makes the config invalid, and CONNECT carries none.
        if (request.Operation is not ("CREATE" or "UPDATE") || !YamlConfigLoader.IsReadKind(request.Group, request.Kind))
        {
            return AdmissionDecision.Allow([]);
        }

        var location = $"{request.Kind} {request.Namespace ?? "default"}/{request.Name}";
        var errors = YamlConfigLoader.ValidateObject(location, request.ObjectText!);
        var denied = errors.Where(e => !e.IsWarning).Select(e => e.Message).ToList();
        var warnings = errors.Where(e => e.IsWarning).Select(e => e.Message).Take(MaxWarnings).ToList();
        return denied.Count == 0 ? AdmissionDecision.Allow(warnings) : AdmissionDecision.Deny(string.Join("; ", denied), warnings);
    }

    /// <summary>Reads the parts of an AdmissionReview the decision needs; a reason naming the field when it is malformed.</summary>
    private static string? Read(JsonNode? body, out AdmissionRequest request)
    {
        request = default!;
        if (body is not JsonObject review)
        {
            return $"the body must be a JSON object: an {ApiVersion} {Kind}";
        }

        if (String(review, "apiVersion") != ApiVersion || String(review, "kind") != Kind)
        {
            return $"apiVersion and kind must be {ApiVersion} and {Kind} (got '{String(review, "apiVersion")}' '{String(review, "kind")}'); list only v1 in admissionReviewVersions";
        }

        if (review["request"] is not JsonObject req)
        {
            return "request is required and must be an object";
        }

        var uid = String(req, "uid");
        if (string.IsNullOrEmpty(uid) || uid.Length > 256)
        {
            return "request.uid is required (a string of at most 256 characters)";
        }

        var operation = String(req, "operation");
        if (operation is not ("CREATE" or "UPDATE" or "DELETE" or "CONNECT"))
        {
            return $"request.operation must be CREATE, UPDATE, DELETE or CONNECT (got '{operation}')";
        }

        if (req["kind"] is not JsonObject kind || String(kind, "kind") is not { Length: > 0 } kindName)
        {
            return "request.kind must be an object with group, version and kind";
        }

        var group = String(kind, "group") ?? string.Empty;
        var ns = String(req, "namespace");
        var name = String(req, "name");
        string? text = null;
        if (operation is "CREATE" or "UPDATE" && YamlConfigLoader.IsReadKind(group, kindName))
        {
            if (req["object"] is not JsonObject obj)
            {
                return $"request.object is required for {operation} and must be an object";
            }

            // The namespace may be only on the request (a namespaced create without metadata.namespace); the rules read it from the object.
            if (!string.IsNullOrEmpty(ns) && obj["metadata"] is JsonObject metadata && metadata["namespace"] is null)
            {
                metadata["namespace"] = ns;
            }

            if (obj["metadata"] is JsonObject named && String(named, "name") is { Length: > 0 } objectName)
            {
                name = objectName;
            }

            // Indented, so a problem's line in the text is near its field (the message names the field path in any case).
            text = obj.ToJsonString(Indented);
        }

        request = new AdmissionRequest(uid, operation, group, kindName, ns, name, text);
        return null;
    }

    private static JsonObject Write(string uid, AdmissionDecision decision)
    {
        var response = new JsonObject { ["uid"] = uid, ["allowed"] = decision.Allowed };
        if (!decision.Allowed)
        {
            response["status"] = new JsonObject { ["code"] = StatusCodes.Status400BadRequest, ["reason"] = "Invalid", ["message"] = decision.Message };
        }

        if (decision.Warnings.Count > 0)
        {
            response["warnings"] = new JsonArray([.. decision.Warnings.Select(w => (JsonNode?)JsonValue.Create(w))]);
        }

        return new JsonObject { ["apiVersion"] = ApiVersion, ["kind"] = Kind, ["response"] = response };
    }

    private static IResult Refuse(int status, string message) =>
        Results.Text(message + Environment.NewLine, "text/plain; charset=utf-8", statusCode: status);

    private static string? String(JsonObject node, string name) =>
        node[name] is JsonValue value && value.TryGetValue<string>(out var text) ? text : null;

    [LoggerMessage(EventId = 1, EventName = "AdmissionDenied", Level = LogLevel.Information, Message = "Admission denied {Operation} of {Kind} {Namespace}/{Name}: {Reason}")]
    private static partial void LogDenied(ILogger logger, string operation, string kind, string? @namespace, string? name, string reason);
}

/// <summary>What the decision reads of an AdmissionReview request; <paramref name="ObjectText"/> is the object as JSON when it is to be validated.</summary>
internal sealed record AdmissionRequest(string Uid, string Operation, string Group, string Kind, string? Namespace, string? Name, string? ObjectText);

/// <summary>The webhook's answer: allowed, or denied with the validation messages; warnings either way.</summary>
internal sealed record AdmissionDecision(bool Allowed, string? Message, IReadOnlyList<string> Warnings)
{
    public static AdmissionDecision Allow(IReadOnlyList<string> warnings) => new(true, null, warnings);

    public static AdmissionDecision Deny(string message, IReadOnlyList<string> warnings) => new(false, message, warnings);
}
