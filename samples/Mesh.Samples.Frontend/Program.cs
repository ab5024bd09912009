using System.Text.Json;
using Mesh.Client;
using Mesh.Samples;

// frontend: the demo's entry point; calls orders over plain HTTP by its logical name.
const string DemoUser = "x-demo-user";
var builder = WebApplication.CreateBuilder(args);
builder.AddServiceMesh(mesh => mesh.Service ??= "frontend");
var stats = builder.AddDemoStats("frontend");
builder.AddDemoTelemetry("frontend");
builder.Services.AddHttpClient("orders", client => client.BaseAddress = new Uri("http://orders/"));

var app = builder.Build();
app.MapGet("/", async (HttpContext context, IHttpClientFactory clients, CancellationToken cancellationToken) =>
{
    stats.RecordRequest();
    var id = Random.Shared.Next(1, 10_000);
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
        if (context.Request.Headers.TryGetValue(DemoUser, out var user))
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
        return Results.Json(new
        {
            frontend = stats.Instance,
            orders = order.RootElement.GetProperty("orders").GetString(),
            inventory = order.RootElement.GetProperty("inventory").GetString(),
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
