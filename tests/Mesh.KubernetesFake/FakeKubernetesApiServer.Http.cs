using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;

namespace Mesh.KubernetesFake;

public sealed partial class FakeKubernetesApiServer
{
    private static readonly JsonSerializerOptions CompactJson = new() { WriteIndented = false };

    private async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var path = request.Path.Value ?? "/";
        var query = request.Query.ToDictionary(kv => kv.Key, kv => kv.Value.LastOrDefault() ?? "", StringComparer.Ordinal);
        var segments = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
        var route = Route(segments);
        var watch = request.Method == "GET" && route.Type is not null && route.Name is null && IsTrue(query.GetValueOrDefault("watch"));
        var verb = route.Type is null ? "discovery" : VerbOf(request.Method, route.Name is not null, watch);

        if (!Authorized(request))
        {
            Log(request, path, query, route, "unauthorized");
            await WriteStatusAsync(context, new FakeKubernetesStatusException(401, "Unauthorized", "Unauthorized")).ConfigureAwait(false);
            return;
        }
        var logged = Log(request, path, query, route, verb);
        if (_unavailable)
        {
            await WriteStatusAsync(context, new FakeKubernetesStatusException(503, "ServiceUnavailable", "the server is currently unable to handle the request")).ConfigureAwait(false);
            return;
        }
        if (_requestFault?.Invoke(logged) is { } fault)
        {
            await WriteStatusAsync(context, fault).ConfigureAwait(false);
            return;
        }

        try
        {
            if (route.Type is null)
            {
                await ServeDiscoveryAsync(context, segments).ConfigureAwait(false);
                return;
            }
            if (route.Type.Plural == "tokenreviews")
            {
                await ServeTokenReviewAsync(context, verb).ConfigureAwait(false);
                return;
            }
            if (route.Subresource is not null && route.Subresource != "status")
            {
                throw new FakeKubernetesStatusException(404, "NotFound", $"the server could not find the requested resource ({route.Subresource})");
            }
            switch (verb)
            {
                case "watch":
                    await ServeWatchAsync(context, route, query).ConfigureAwait(false);
                    return;
                case "list":
                    await WriteJsonAsync(context, 200, ListObject(route, query)).ConfigureAwait(false);
                    return;
                case "get":
                    await WriteJsonAsync(context, 200, KubeJson.ForVersion(_store.Get(route.Type, route.Namespace, route.Name!), route.Type, route.Version)).ConfigureAwait(false);
                    return;
                case "create":
                {
                    var body = await ReadBodyAsync(context, route).ConfigureAwait(false);
                    var created = IsDryRun(query) ? body : _store.Create(route.Type, NamespaceFor(route), body);
                    await WriteJsonAsync(context, 201, KubeJson.ForVersion(created, route.Type, route.Version)).ConfigureAwait(false);
                    return;
                }
                case "update":
                {
                    var body = await ReadBodyAsync(context, route).ConfigureAwait(false);
                    var updated = _store.Update(route.Type, NamespaceFor(route), route.Name!, body);
                    await WriteJsonAsync(context, 200, KubeJson.ForVersion(updated, route.Type, route.Version)).ConfigureAwait(false);
                    return;
                }
                case "patch":
                {
                    var contentType = request.ContentType ?? "";
                    if (!contentType.StartsWith("application/merge-patch+json", StringComparison.OrdinalIgnoreCase)
                        && !contentType.StartsWith("application/strategic-merge-patch+json", StringComparison.OrdinalIgnoreCase))
                    {
                        throw new FakeKubernetesStatusException(415, "UnsupportedMediaType", $"the fake API server supports merge and strategic-merge patches only, not '{contentType}'");
                    }
                    var patch = await ReadBodyAsync(context, route).ConfigureAwait(false);
                    StripDirectives(patch);
                    var patched = _store.Patch(route.Type, NamespaceFor(route), route.Name!, patch);
                    await WriteJsonAsync(context, 200, KubeJson.ForVersion(patched, route.Type, route.Version)).ConfigureAwait(false);
                    return;
                }
                case "delete":
                {
                    using var reader = new StreamReader(request.Body, Encoding.UTF8);
                    var text = await reader.ReadToEndAsync(context.RequestAborted).ConfigureAwait(false);
                    var options = string.IsNullOrWhiteSpace(text) ? null : JsonNode.Parse(text) as JsonObject;
                    var precondition = options?["preconditions"]?["resourceVersion"]?.GetValue<string>();
                    var deleted = _store.Delete(route.Type, NamespaceFor(route), route.Name!, precondition);
                    await WriteJsonAsync(context, 200, route.Type.ReturnsDeletedObject ? KubeJson.ForVersion(deleted, route.Type, route.Version) : KubeJson.DeletedStatus(route.Type, deleted)).ConfigureAwait(false);
                    return;
                }
                default:
                    throw new FakeKubernetesStatusException(405, "MethodNotAllowed", $"the server does not allow this method on the requested resource ({request.Method} {path})");
            }
        }
        catch (FakeKubernetesStatusException e)
        {
            if (!context.Response.HasStarted)
            {
                await WriteStatusAsync(context, e).ConfigureAwait(false);
            }
        }
        catch (JsonException e)
        {
            if (!context.Response.HasStarted)
            {
                await WriteStatusAsync(context, FakeKubernetesStatusException.BadRequest("invalid JSON body: " + e.Message)).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is InvalidOperationException or FormatException or ArgumentException or KeyNotFoundException)
        {
            // A bug of the fake or a body it cannot read: said in the Status, so the failing test shows why.
            if (!context.Response.HasStarted)
            {
                await WriteStatusAsync(context, new FakeKubernetesStatusException(500, "InternalError", "fake API server: " + e)).ConfigureAwait(false);
            }
        }
    }

    private readonly record struct ApiRoute(FakeResourceType? Type, string Version, string? Namespace, string? Name, string? Subresource);

    private static ApiRoute Route(string[] s)
    {
        // /api/v1/... or /apis/{group}/{version}/...
        string group, version;
        int rest;
        if (s.Length >= 3 && s[0] == "api")
        {
            (group, version, rest) = ("", s[1], 2);
        }
        else if (s.Length >= 4 && s[0] == "apis")
        {
            (group, version, rest) = (s[1], s[2], 3);
        }
        else
        {
            return default;
        }
        var r = s[rest..];
        if (r[0] == "namespaces" && r.Length >= 3 && r[2] is not ("status" or "finalize"))
        {
            var type = FakeResourceCatalog.Find(group, version, r[2]);
            if (type is null || !type.Namespaced)
            {
                return default;
            }
            return new ApiRoute(type, version, r[1], r.Length > 3 ? r[3] : null, r.Length > 4 ? r[4] : null);
        }
        var clusterType = FakeResourceCatalog.Find(group, version, r[0]);
        if (clusterType is null)
        {
            return default;
        }
        return new ApiRoute(clusterType, version, null, r.Length > 1 ? r[1] : null, r.Length > 2 ? r[2] : null);
    }

    private static string VerbOf(string method, bool named, bool watch) => (method, named) switch
    {
        ("GET", true) => "get",
        ("GET", false) => watch ? "watch" : "list",
        ("POST", false) => "create",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => method.ToLowerInvariant(),
    };

    private static bool IsTrue(string? value) => value is "1" or "true" or "True";

    private static bool IsDryRun(Dictionary<string, string> query) => query.GetValueOrDefault("dryRun") == "All";

    private string? NamespaceFor(ApiRoute route) => route.Type!.Namespaced ? route.Namespace ?? _options.DefaultNamespace : null;

    private bool Authorized(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.Ordinal)
            && System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(header[7..].Trim()), Encoding.UTF8.GetBytes(Token));
    }

    private FakeApiRequest Log(HttpRequest request, string path, Dictionary<string, string> query, ApiRoute route, string verb)
    {
        var logged = new FakeApiRequest(_options.TimeProvider.GetUtcNow(), request.Method, path, query, route.Type?.Plural, route.Type?.Group, route.Namespace, route.Name, verb, request.Protocol);
        lock (_requests)
        {
            _requests.Add(logged);
        }
        Notify();
        return logged;
    }

    private JsonObject ListObject(ApiRoute route, Dictionary<string, string> query)
    {
        var type = route.Type!;
        long? at = null;
        string? afterKey = null;
        var rvText = query.GetValueOrDefault("resourceVersion");
        long.TryParse(rvText, NumberStyles.None, CultureInfo.InvariantCulture, out var rv);
        if (query.GetValueOrDefault("continue") is { Length: > 0 } token)
        {
            (at, afterKey) = DecodeContinue(token);
            if (at < _store.CompactedAt)
            {
                throw new FakeKubernetesStatusException(410, "Expired", "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
            }
        }
        else if (query.GetValueOrDefault("resourceVersionMatch") == "Exact")
        {
            at = rv > 0 ? rv : throw FakeKubernetesStatusException.BadRequest("resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\" or unset");
        }
        else if (rv > _store.ResourceVersion)
        {
            throw new FakeKubernetesStatusException(504, "Timeout", $"Too large resource version: {rv}, current: {_store.ResourceVersion}");
        }
        _ = int.TryParse(query.GetValueOrDefault("limit"), NumberStyles.None, CultureInfo.InvariantCulture, out var limit);
        var page = _store.ListPage(type, route.Namespace, LabelSelector.Parse(query.GetValueOrDefault("labelSelector")), FieldSelector.Parse(query.GetValueOrDefault("fieldSelector")), at, afterKey, limit);
        var array = new JsonArray();
        foreach (var item in page.Items)
        {
            array.Add(KubeJson.ForVersion(item, type, route.Version));
        }
        var metadata = new JsonObject { ["resourceVersion"] = page.ResourceVersion.ToString(CultureInfo.InvariantCulture) };
        if (page.ContinueAfter is not null)
        {
            metadata["continue"] = EncodeContinue(page.ResourceVersion, page.ContinueAfter);
            metadata["remainingItemCount"] = page.Remaining;
        }
        return new JsonObject
        {
            ["kind"] = type.Kind + "List",
            ["apiVersion"] = type.ApiVersion(route.Version),
            ["metadata"] = metadata,
            ["items"] = array,
        };
    }

    private static string EncodeContinue(long resourceVersion, string afterKey) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(new JsonObject { ["v"] = "meta.k8s.io/v1", ["rv"] = resourceVersion, ["start"] = afterKey }.ToJsonString(CompactJson)));

    private static (long ResourceVersion, string AfterKey) DecodeContinue(string token)
    {
        try
        {
            var node = JsonNode.Parse(Convert.FromBase64String(token))!;
            return (KubeJson.ReadLong(node["rv"]) ?? throw new FormatException("rv"), node["start"]!.GetValue<string>());
        }
        catch (Exception e) when (e is FormatException or JsonException or NullReferenceException or InvalidOperationException)
        {
            throw FakeKubernetesStatusException.BadRequest("continue key is not valid: " + e.Message);
        }
    }

    private async Task ServeWatchAsync(HttpContext context, ApiRoute route, Dictionary<string, string> query)
    {
        var rvText = query.GetValueOrDefault("resourceVersion");
        long? from = null;
        if (!string.IsNullOrEmpty(rvText) && rvText != "0")
        {
            from = long.TryParse(rvText, NumberStyles.None, CultureInfo.InvariantCulture, out var parsed)
                ? parsed
                : throw FakeKubernetesStatusException.BadRequest($"resourceVersion: Invalid value: \"{rvText}\": must be an integer");
        }
        var watcher = new Watcher
        {
            ResourceType = route.Type!,
            Version = route.Version,
            Namespace = route.Namespace,
            Labels = LabelSelector.Parse(query.GetValueOrDefault("labelSelector")),
            Fields = FieldSelector.Parse(query.GetValueOrDefault("fieldSelector")),
            Bookmarks = IsTrue(query.GetValueOrDefault("allowWatchBookmarks")),
            InitialEventsEnd = IsTrue(query.GetValueOrDefault("sendInitialEvents")),
        };
        if (watcher.InitialEventsEnd)
        {
            // Streaming list: initial ADDED events, then a bookmark annotated k8s.io/initial-events-end.
            from = null;
        }

        var response = context.Response;
        response.StatusCode = 200;
        response.ContentType = "application/json";
        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        // Registered for DropWatches before the store counts it as open, so a test that saw it open can always drop it.
        _openWatches[watcher] = context;
        try
        {
            _store.Watch(watcher, from);
        }
        catch (FakeKubernetesStatusException e) when (e.Code == 410)
        {
            _openWatches.TryRemove(watcher, out _);
            watcher.End.Dispose();
            // The real server answers 200 and sends the 410 as an ERROR event, then ends the stream.
            await WriteLineAsync(response, new JsonObject { ["type"] = "ERROR", ["object"] = e.ToStatus() }, context.RequestAborted).ConfigureAwait(false);
            return;
        }
        using var end = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, watcher.End.Token, _stopping.Token);
        if (int.TryParse(query.GetValueOrDefault("timeoutSeconds"), CultureInfo.InvariantCulture, out var timeoutSeconds) && timeoutSeconds > 0)
        {
            end.CancelAfter(TimeSpan.FromSeconds(timeoutSeconds));
        }
        try
        {
            await response.StartAsync(end.Token).ConfigureAwait(false);
            await response.Body.FlushAsync(end.Token).ConfigureAwait(false);
            var reader = watcher.Queue.Reader;
            while (true)
            {
                Task unsilenced;
                lock (_signalGate)
                {
                    unsilenced = _unsilenced.Task;
                }
                await unsilenced.WaitAsync(end.Token).ConfigureAwait(false);
                if (!await reader.WaitToReadAsync(end.Token).ConfigureAwait(false))
                {
                    break;
                }
                var wrote = false;
                while (!_silenced && reader.TryRead(out var item))
                {
                    await WriteLineAsync(response, new JsonObject { ["type"] = item.Type, ["object"] = item.Object }, end.Token, flush: false).ConfigureAwait(false);
                    wrote = true;
                }
                if (wrote)
                {
                    await response.Body.FlushAsync(end.Token).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (end.IsCancellationRequested)
        {
            if (watcher.Abort)
            {
                context.Abort();
            }
        }
        catch (IOException)
        {
            // The client went away.
        }
        finally
        {
            _openWatches.TryRemove(watcher, out _);
            _store.Unwatch(watcher);
            watcher.End.Dispose();
        }
    }

    private async Task ServeTokenReviewAsync(HttpContext context, string verb)
    {
        if (verb != "create")
        {
            throw new FakeKubernetesStatusException(405, "MethodNotAllowed", "tokenreviews support create only");
        }
        if (_tokenReviewFailureCode is var failure and > 0)
        {
            throw new FakeKubernetesStatusException(failure, failure == 500 ? "InternalError" : "ServiceUnavailable", "tokenreview failed (injected fault)");
        }
        var review = await JsonNode.ParseAsync(context.Request.Body).ConfigureAwait(false) as JsonObject
            ?? throw FakeKubernetesStatusException.BadRequest("the body must be a TokenReview object");
        if (review["kind"]?.GetValue<string>() is { } kind && kind != "TokenReview")
        {
            throw FakeKubernetesStatusException.BadRequest($"expected kind TokenReview, got {kind}");
        }
        var spec = review["spec"] as JsonObject ?? [];
        var token = spec["token"]?.GetValue<string>();
        if (string.IsNullOrEmpty(token))
        {
            throw new FakeKubernetesStatusException(422, "Invalid", "TokenReview.authentication.k8s.io \"\" is invalid: spec.token: Required value");
        }
        var requested = (spec["audiences"] as JsonArray)?.Select(a => a!.GetValue<string>()).ToList() is { Count: > 0 } list
            ? list
            : [.. _options.ApiServerAudiences];
        var status = new JsonObject();
        if (!_tokens.TryGetValue(token, out var sa))
        {
            status["user"] = new JsonObject();
            status["error"] = "[invalid bearer token, square/go-jose: error in cryptographic primitive, token lookup failed]";
        }
        else
        {
            var granted = requested.Intersect(sa.Audiences, StringComparer.Ordinal).ToList();
            if (sa.ExpiresAt is { } expiry && _options.TimeProvider.GetUtcNow() >= expiry)
            {
                status["user"] = new JsonObject();
                status["error"] = "[invalid bearer token, token has expired]";
            }
            else if (granted.Count == 0)
            {
                status["user"] = new JsonObject();
                status["error"] = $"[invalid bearer token, token audiences {JsonSerializer.Serialize(sa.Audiences)} is invalid for the target audiences {JsonSerializer.Serialize(requested)}]";
            }
            else
            {
                var extra = new JsonObject();
                if (sa.PodName is not null)
                {
                    extra["authentication.kubernetes.io/pod-name"] = new JsonArray(sa.PodName);
                    extra["authentication.kubernetes.io/pod-uid"] = new JsonArray(sa.PodUid);
                }
                status["authenticated"] = true;
                status["user"] = new JsonObject
                {
                    ["username"] = $"system:serviceaccount:{sa.Namespace}:{sa.ServiceAccount}",
                    ["uid"] = sa.ServiceAccountUid,
                    ["groups"] = new JsonArray("system:serviceaccounts", $"system:serviceaccounts:{sa.Namespace}", "system:authenticated"),
                    ["extra"] = extra,
                };
                status["audiences"] = new JsonArray([.. granted.Select(a => (JsonNode)a)]);
            }
        }
        var answer = new JsonObject
        {
            ["kind"] = "TokenReview",
            ["apiVersion"] = "authentication.k8s.io/v1",
            ["metadata"] = new JsonObject { ["creationTimestamp"] = null },
            ["spec"] = spec.DeepClone(),
            ["status"] = status,
        };
        await WriteJsonAsync(context, 201, answer).ConfigureAwait(false);
    }

    private static async Task<JsonObject> ReadBodyAsync(HttpContext context, ApiRoute route)
    {
        var node = await JsonNode.ParseAsync(context.Request.Body).ConfigureAwait(false);
        if (node is not JsonObject obj)
        {
            throw FakeKubernetesStatusException.BadRequest("the body must be a JSON object");
        }
        if (obj["kind"]?.GetValue<string>() is { } kind && kind != route.Type!.Kind && context.Request.Method != "PATCH")
        {
            throw FakeKubernetesStatusException.BadRequest($"the kind of the object ({kind}) does not match the resource {route.Type.QualifiedName} ({route.Type.Kind})");
        }
        return obj;
    }

    /// <summary>Strategic-merge directives ($patch, $setElementOrder/…, $retainKeys) are dropped: lists merge as in JSON merge patch (replaced).</summary>
    private static void StripDirectives(JsonObject obj)
    {
        foreach (var key in obj.Select(kv => kv.Key).Where(k => k.StartsWith('$')).ToList())
        {
            obj.Remove(key);
        }
        foreach (var (_, value) in obj)
        {
            if (value is JsonObject child)
            {
                StripDirectives(child);
            }
        }
    }

    private static async Task WriteLineAsync(HttpResponse response, JsonObject line, CancellationToken cancellationToken, bool flush = true)
    {
        var bytes = Encoding.UTF8.GetBytes(line.ToJsonString(CompactJson) + "\n");
        await response.Body.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        if (flush)
        {
            await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static async Task WriteJsonAsync(HttpContext context, int code, JsonNode body)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync(body.ToJsonString(CompactJson), context.RequestAborted).ConfigureAwait(false);
    }

    private static Task WriteStatusAsync(HttpContext context, FakeKubernetesStatusException e) => WriteJsonAsync(context, e.Code, e.ToStatus());
}
