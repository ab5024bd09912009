using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Mesh.IntegrationTests.Infrastructure;

/// <summary>A real Kestrel backend on 127.0.0.1 (HTTP/1.1) that answers every request with its name: which backend served it.</summary>
internal sealed record NamedBackend(WebApplication App, int Port) : IAsyncDisposable
{
    public static async Task<NamedBackend> StartAsync(string name)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0, listen => listen.Protocols = Microsoft.AspNetCore.Server.Kestrel.Core.HttpProtocols.Http1));
        var app = builder.Build();
        app.Run(context => context.Response.WriteAsync(name, context.RequestAborted));
        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        return new NamedBackend(app, new Uri(address).Port);
    }

    public ValueTask DisposeAsync() => App.DisposeAsync();
}
