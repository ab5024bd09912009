using System.Text.Json;
using Mesh.Client;
using Mesh.Samples;

// frontend: the demo's entry point; calls orders and ratings (the Python service behind its mesh-sidecar) over plain
// HTTP by their logical names; the mesh adds mTLS to both.
const string DemoUser = "x-demo-user";
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceMesh(mesh => mesh.Service ??= "frontend");
var stats = builder.AddDemoStats("frontend");
builder.AddDemoTelemetry("frontend");
builder.Services.AddHttpClient("orders", client => client.BaseAddress = new Uri("http://orders/"));
builder.Services.AddHttpClient("ratings", client => client.BaseAddress = new Uri("http://ratings/"));

var app = builder.Build();
app.MapGet("/", async (HttpContext context, IHttpClientFactory clients, CancellationToken cancellationToken) =>
{
    stats.RecordRequest();
    var id = Random.Shared.Next(1, 10_000);
    var user = context.Request.Headers.TryGetValue(DemoUser, out var values) ? values : default;

    // ratings is a side call: the page shows the order without it (with the reason) when ratings is down or absent.
    var rating = GetRatingAsync(clients.CreateClient("ratings"), id, user, cancellationToken);
    try
    {
        // One order in five is also cancelled; the demo's AuthorizationPolicy lets only orders' owners do that.
        if (id % 5 == 0)
        {
            using var cancel = await clients.CreateClient("orders").DeleteAsync($"orders/{id}", cancellationToken);
            if (cancel.StatusCode == System.Net.HttpStatusCode.Forbidden)
            {
                stats.RecordDenied();
            }
        }

        // The user header travels on to orders, whose VirtualService routes beta users to v2 (an A/B route).
        using var request = new HttpRequestMessage(HttpMethod.Get, $"orders/{id}");
        if (user.Count > 0)
        {
            request.Headers.TryAddWithoutValidation(DemoUser, (IEnumerable<string?>)user);
        }

        using var response = await clients.CreateClient("orders").SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            stats.RecordError();
            return Results.Problem($"orders answered {(int)response.StatusCode}: {body}", statusCode: StatusCodes.Status502BadGateway);
        }

        using var order = JsonDocument.Parse(body);
        var (ratings, ratingsError) = await rating;
        return Results.Json(new
        {
            frontend = stats.Instance,
            orders = order.RootElement.GetProperty("orders").GetString(),
            inventory = order.RootElement.GetProperty("inventory").GetString(),
            ratings,
            ratingsError,
        });
    }
    catch (ServiceMeshException e)
    {
        stats.RecordError();
        return Results.Problem(e.Message, statusCode: StatusCodes.Status503ServiceUnavailable);
    }
    catch (HttpRequestException e)
    {
        stats.RecordError();
        return Results.Problem($"orders unreachable: {e.Message}", statusCode: StatusCodes.Status502BadGateway);
    }
});
app.MapDemoEndpoints();
app.MapDemoTelemetry();
app.Run();

// Gets ratings' answer for the order (its JSON as is), or the reason there is none; a failure counts in frontend's stats.
async Task<(JsonElement? Rating, string? Error)> GetRatingAsync(HttpClient ratings, int id, Microsoft.Extensions.Primitives.StringValues user, CancellationToken cancellationToken)
{
    try
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"ratings/{id}");
        if (user.Count > 0)
        {
            request.Headers.TryAddWithoutValidation(DemoUser, (IEnumerable<string?>)user);
        }

        using var response = await ratings.SendAsync(request, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        if (response.IsSuccessStatusCode)
        {
            using var json = JsonDocument.Parse(body);
            return (json.RootElement.Clone(), null);
        }

        if (response.StatusCode == System.Net.HttpStatusCode.Forbidden)
        {
            stats.RecordDenied();
        }
        else
        {
            stats.RecordError();
        }

        return (null, $"ratings answered {(int)response.StatusCode}: {body}");
    }
    catch (Exception e) when (e is HttpRequestException or JsonException || (e is TaskCanceledException && !cancellationToken.IsCancellationRequested))
    {
        stats.RecordError();
        return (null, $"ratings unreachable: {e.Message}");
    }
}
